// Reference programs for goro's benchmark suite (bench/run.sh).
//
// One binary, one workload per run:
//
//	bench_go -w W1 -n 1000000 -procs 2
//
// prints one line on stdout, "RESULT <workload> <value> <unit>" (W6 a second
// one, its lateness; net.go also has the servers and the load of bench/net.sh).
// Each workload mirrors the C tasks of bench/c/bench.c: same shape, same N.
// A failed self-check prints a message on stderr and exits with status 1.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var workloads = []struct {
	name string
	n    int // default N
	run  func(n int) (float64, string)
}{
	{"W1", 1000000, w1},
	{"W2", 1000000, w2},
	{"W3", 10000000, w3},
	{"W4", 4000000, w4},
	{"W5", 1000000, w5},
	{"W6", 100000, w6},
	{"W7", 10000000, w7},
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "bench_go: "+format+"\n", a...)
	os.Exit(1)
}

func perOp(start time.Time, n int) float64 {
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// W1: spawn n goroutines from one goroutine, wait for all to finish.
func w1(n int) (float64, string) {
	var wg sync.WaitGroup
	var done int64
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			atomic.AddInt64(&done, 1)
			wg.Done()
		}()
	}
	wg.Wait()
	r := perOp(start, n)
	if done != int64(n) {
		fail("W1: %d of %d finished", done, n)
	}
	return r, "ns/task"
}

// W2: ping-pong over two unbuffered channels, n round trips.
func w2(n int) (float64, string) {
	ping := make(chan int64)
	pong := make(chan int64)
	var wg sync.WaitGroup
	var last int64
	start := time.Now()
	wg.Add(2)
	go func() { // pinger
		defer wg.Done()
		for i := 0; i < n; i++ {
			ping <- int64(i)
			last = <-pong
		}
	}()
	go func() { // ponger
		defer wg.Done()
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
	}()
	wg.Wait()
	r := perOp(start, n)
	if last != int64(n) {
		fail("W2: last reply %d, want %d", last, n)
	}
	return r, "ns/roundtrip"
}

// W3: one producer, one consumer, buffered channel of cap 1024, n int64s.
func w3(n int) (float64, string) {
	c := make(chan int64, 1024)
	var wg sync.WaitGroup
	var sum, got int64
	start := time.Now()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			c <- int64(i)
		}
		close(c)
	}()
	go func() {
		defer wg.Done()
		for v := range c {
			sum += v
			got++
		}
	}()
	wg.Wait()
	r := perOp(start, n)
	if got != int64(n) || sum != int64(n)*int64(n-1)/2 {
		fail("W3: got %d items, sum %d", got, sum)
	}
	return r, "ns/item"
}

// W4: four producers, each on its own unbuffered channel, n/4 items each;
// one consumer selects over the four until all are closed.
func w4(n int) (float64, string) {
	const np = 4
	per := n / np
	n = per * np
	var chs [np]chan int64
	for i := range chs {
		chs[i] = make(chan int64)
	}
	var wg sync.WaitGroup
	var sum, got int64
	start := time.Now()
	wg.Add(np + 1)
	for p := 0; p < np; p++ {
		go func(c chan int64) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c <- int64(i)
			}
			close(c)
		}(chs[p])
	}
	go func() {
		defer wg.Done()
		c0, c1, c2, c3 := chs[0], chs[1], chs[2], chs[3]
		open := np
		for open > 0 {
			var v int64
			var ok bool
			select {
			case v, ok = <-c0:
				if !ok {
					c0 = nil
				}
			case v, ok = <-c1:
				if !ok {
					c1 = nil
				}
			case v, ok = <-c2:
				if !ok {
					c2 = nil
				}
			case v, ok = <-c3:
				if !ok {
					c3 = nil
				}
			}
			if ok {
				sum += v
				got++
			} else {
				open--
			}
		}
	}()
	wg.Wait()
	r := perOp(start, n)
	if got != int64(n) || sum != np*int64(per)*int64(per-1)/2 {
		fail("W4: got %d items, sum %d", got, sum)
	}
	return r, "ns/item"
}

func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail("W5: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line[len("VmRSS:"):])
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil {
				fail("W5: bad VmRSS line %q", line)
			}
			return kb * 1024
		}
	}
	fail("W5: no VmRSS in /proc/self/status")
	return 0
}

// W5: n goroutines blocked on one channel receive; bytes of RSS each.
func w5(n int) (float64, string) {
	gate := make(chan struct{})
	var started, finished sync.WaitGroup
	var woke int64
	runtime.GC()
	before := vmRSS()
	started.Add(n)
	finished.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-gate
			atomic.AddInt64(&woke, 1)
			finished.Done()
		}()
	}
	started.Wait()
	// started.Done runs just before the receive: give the last few
	// goroutines time to reach it, as the C side polls a parked count.
	time.Sleep(10 * time.Millisecond)
	after := vmRSS()
	close(gate)
	finished.Wait()
	if woke != int64(n) {
		fail("W5: %d of %d woke", woke, n)
	}
	return float64(after-before) / float64(n), "bytes/task"
}

// W7: thread-ring (the Benchmarks Game): 503 goroutines in a ring, each
// receiving on its own unbuffered channel and passing token-1 on; n hops.
// The one that receives 0 closes every channel so that all finish.
func w7(n int) (float64, string) {
	const ring = 503
	var chs [ring]chan int
	for i := range chs {
		chs[i] = make(chan int)
	}
	var wg sync.WaitGroup
	var winner int64 = -1
	start := time.Now()
	wg.Add(ring + 1)
	for i := 0; i < ring; i++ {
		go func(id int, in <-chan int, out chan<- int) {
			defer wg.Done()
			for {
				t, ok := <-in
				if !ok {
					return
				}
				if t == 0 {
					atomic.StoreInt64(&winner, int64(id+1))
					for j := range chs {
						close(chs[j])
					}
					return
				}
				out <- t - 1
			}
		}(i, chs[i], chs[(i+1)%ring])
	}
	go func() { // starter
		defer wg.Done()
		chs[0] <- n
	}()
	wg.Wait()
	r := perOp(start, n)
	if want := int64(n%ring + 1); winner != want {
		fail("W7: winner %d, want %d", winner, want)
	}
	return r, "ns/hop"
}

func main() {
	w := flag.String("w", "", "workload: W1 W2 W3 W4 W5 W6 W7")
	n := flag.Int("n", 0, "N (0: the workload's default)")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: Go's default, the CPUs)")
	list := flag.Bool("list", false, "print the supported workloads and exit")
	server := flag.String("serve", "", "run a server for bench/net.sh: echo (W8) or http (W9)")
	limit := flag.Int("limit", 300, "-serve: exit after this many seconds (0: never)")
	load := flag.String("load", "", "run W8's load client against -addr: echo")
	addr := flag.String("addr", "", "-load: the server's host:port")
	conns := flag.Int("c", 100, "-load: connections")
	size := flag.Int("size", 64, "-load: bytes per message")
	secs := flag.Float64("d", 5, "-load: seconds")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if *server != "" {
		serve(*server, *limit)
		return
	}
	if *load != "" {
		if *load != "echo" || *addr == "" || *conns < 1 || *size < 1 || *secs <= 0 {
			fail("-load echo -addr HOST:PORT [-c N] [-size B] [-d S]")
		}
		loadEcho(*addr, *conns, *size, *secs)
		return
	}
	if *list {
		for _, wl := range workloads {
			fmt.Println(wl.name)
		}
		return
	}
	for _, wl := range workloads {
		if wl.name == *w {
			if *n <= 0 {
				*n = wl.n
			}
			v, unit := wl.run(*n)
			fmt.Printf("RESULT %s %.1f %s\n", wl.name, v, unit)
			for _, line := range extraResults {
				fmt.Println(line)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "bench_go: unknown workload %q (try -list)\n", *w)
	os.Exit(2)
}
