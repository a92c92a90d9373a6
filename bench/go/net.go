// The timer and network workloads of bench/net.sh: W6 (many sleepers), and
// the Go side of W8 (TCP echo) and W9 (HTTP keep-alive hello):
//
//	bench_go -w W6 -n 100000                 # prints RESULT W6 <wall> ms and RESULT W6late <worst> ms
//	bench_go -serve echo|http [-limit 120]   # prints "LISTEN 127.0.0.1:<port>", serves until killed or -limit s
//	                                         # (http: "/?delay=10ms" answers after 10 ms)
//	bench_go -load echo -addr 127.0.0.1:P [-c 100] [-size 64] [-d 5]
//	                                         # W8's load: prints RESULT W8 <round trips/s> rt/s
//
// Servers listen on 127.0.0.1 only, on a port the kernel picks.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Lines printed after the workload's own RESULT line (W6's lateness).
var extraResults []string

// W6: n goroutines each sleep d_i, spread evenly over [0, 1 s) in a
// shuffled order: d_i = ((i*7919) mod n) / n seconds, i = 0..n-1 (the
// same in every implementation).  Wall: from before the first spawn until
// all woke, in ms.  Lateness of one sleeper: (wake - just before its
// sleep) - d_i; the worst of all, in ms, is a second RESULT line.
func w6(n int) (float64, string) {
	late := make([]int64, n)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		d := time.Duration(int64(i) * 7919 % int64(n) * int64(time.Second) / int64(n))
		go func(i int, d time.Duration) {
			t0 := time.Now()
			time.Sleep(d)
			late[i] = int64(time.Since(t0) - d)
			wg.Done()
		}(i, d)
	}
	wg.Wait()
	wall := time.Since(start)
	worst := late[0]
	for _, l := range late {
		if l < 0 {
			fail("W6: a sleeper woke %d ns early", -l)
		}
		if l > worst {
			worst = l
		}
	}
	extraResults = append(extraResults, fmt.Sprintf("RESULT W6late %.3f ms", float64(worst)/1e6))
	return float64(wall.Nanoseconds()) / 1e6, "ms"
}

// listenLoopback listens on 127.0.0.1, a port the kernel picks, and
// announces it on stdout for bench/net.sh.
func listenLoopback() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	fmt.Printf("LISTEN %s\n", l.Addr())
	os.Stdout.Sync()
	return l
}

// echo: every connection writes back what it reads, until EOF.
func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if _, werr := c.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serve(kind string, limit int) {
	if limit > 0 {
		time.AfterFunc(time.Duration(limit)*time.Second, func() {
			fmt.Fprintf(os.Stderr, "bench_go: server: -limit %d s reached, exiting\n", limit)
			os.Exit(3)
		})
	}
	l := listenLoopback()
	switch kind {
	case "echo":
		for {
			c, err := l.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				fail("accept: %v", err)
			}
			go echoConn(c)
		}
	case "http":
		hello := []byte("hello")
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			// "/?delay=10ms": answer after that long (bench/hey.sh).
			if r.URL.RawQuery != "" {
				if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
					time.Sleep(d)
				}
			}
			w.Header().Set("Content-Type", "text/plain")
			w.Write(hello)
		})
		srv := &http.Server{Handler: mux}
		fail("http: %v", srv.Serve(l))
	default:
		fail("unknown server %q (echo or http)", kind)
	}
}

// W8's load: c connections to an echo server, each a loop of one size-byte
// message out and its echo back, for d seconds; every echo is checked.
// Prints round trips per second (those completed within the d seconds).
func loadEcho(addr string, conns, size int, secs float64) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fail("W8: dial %s: %v", addr, err)
		}
		cs[i] = c
	}
	dur := time.Duration(secs * float64(time.Second))
	var total int64
	var failed int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	var end time.Time
	wg.Add(conns)
	for i, c := range cs {
		go func(i int, c net.Conn) {
			defer wg.Done()
			defer c.Close()
			out := make([]byte, size)
			in := make([]byte, size)
			<-gate
			c.SetDeadline(end.Add(10 * time.Second)) // a stuck server fails the run
			var k int64
			for round := 0; ; round++ {
				for j := range out {
					out[j] = byte(i + round + j)
				}
				if _, err := c.Write(out); err != nil {
					fmt.Fprintf(os.Stderr, "bench_go: W8: conn %d: write: %v\n", i, err)
					atomic.StoreInt32(&failed, 1)
					return
				}
				if _, err := io.ReadFull(c, in); err != nil {
					fmt.Fprintf(os.Stderr, "bench_go: W8: conn %d: read: %v\n", i, err)
					atomic.StoreInt32(&failed, 1)
					return
				}
				if !bytes.Equal(in, out) {
					fmt.Fprintf(os.Stderr, "bench_go: W8: conn %d: the echo differs from the message\n", i)
					atomic.StoreInt32(&failed, 1)
					return
				}
				if time.Now().After(end) {
					break
				}
				k++
			}
			atomic.AddInt64(&total, k)
		}(i, c)
	}
	end = time.Now().Add(dur)
	close(gate)
	wg.Wait()
	if failed != 0 {
		fail("W8: a connection failed")
	}
	if total == 0 {
		fail("W8: no round trip completed")
	}
	fmt.Printf("RESULT W8 %.1f rt/s\n", float64(total)/dur.Seconds())
}
