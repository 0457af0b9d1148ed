package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// Calls that arrive while an RPC to the peer is in flight go together in
// the next one; every item is sent once, every caller gets the answer to
// the RPC that carried its item, and the sender ends with the queue.
func TestBatches(t *testing.T) {
	var wg sync.WaitGroup
	b := &batches[*meshpb.Entry, struct{}]{wg: &wg}
	var rpcs atomic.Int64
	var mu sync.Mutex
	sent := map[string]int{}
	release := make(chan struct{})
	send := func(_ context.Context, es []*meshpb.Entry) (struct{}, error) {
		if rpcs.Add(1) == 1 {
			<-release // the first RPC is slow: the others queue behind it
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range es {
			sent[e.GetKey()]++
		}
		if len(es) > maxBatchEntries {
			return struct{}{}, fmt.Errorf("a batch of %d entries", len(es))
		}
		return struct{}{}, nil
	}
	const writers = 600
	errs := make(chan error, writers)
	first := make(chan struct{})
	go func() {
		_, err := b.do(context.Background(), "n2", &meshpb.Entry{Key: "k0"}, send)
		errs <- err
	}()
	go func() {
		for rpcs.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		close(first)
	}()
	<-first
	var started sync.WaitGroup
	for i := 1; i < writers; i++ {
		started.Add(1)
		go func() {
			started.Done()
			_, err := b.do(context.Background(), "n2", &meshpb.Entry{Key: fmt.Sprint("k", i)}, send)
			errs <- err
		}()
	}
	started.Wait()
	// Every other writer queues behind the slow first RPC.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		queued := len(b.peers["n2"].items)
		b.mu.Unlock()
		if queued == writers-1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writers queued", queued, writers-1)
		}
	}
	close(release)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait() // the sender ended
	if len(sent) != writers {
		t.Fatalf("%d keys sent, want %d", len(sent), writers)
	}
	for k, n := range sent {
		if n != 1 {
			t.Fatalf("%s sent %d times", k, n)
		}
	}
	// The first alone, then the queue in batches of maxBatchEntries.
	if n, want := rpcs.Load(), int64(1+(writers-1+maxBatchEntries-1)/maxBatchEntries); n != want {
		t.Fatalf("%d RPCs for %d writes, want %d (the queued ones batched by up to %d)", n, writers, want, maxBatchEntries)
	}

	// A failed RPC fails the writes it carried, and only those.
	boom := errors.New("peer down")
	_, err := b.do(context.Background(), "n3", &meshpb.Entry{Key: "x"}, func(context.Context, []*meshpb.Entry) (struct{}, error) { return struct{}{}, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("put over a failing RPC: %v", err)
	}
	// A writer that gives up gets its context's error; the entry may
	// still reach the peer.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stuck := make(chan struct{})
	_, err = b.do(ctx, "n4", &meshpb.Entry{Key: "y"}, func(context.Context, []*meshpb.Entry) (struct{}, error) { <-stuck; return struct{}{}, nil })
	close(stuck)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled writer: %v", err)
	}
	wg.Wait()
}
