package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/sipmesh/sipmesh/internal/growstack"
)

// maxBatchEntries bounds one batched RPC: a larger backlog goes in the
// next one.
const maxBatchEntries = 256

// batches sends the calls bound for one peer as few RPCs as the load
// allows (group commit): the first call goes at once, and those that
// arrive while an RPC to that peer is in flight wait for it to return and
// then go together in the next one, each caller still waiting for the
// answer to the RPC that carried its item. Each RPC is a gRPC stream, an
// HTTP/2 frame, a TLS record and a write system call on each side, the
// largest cost of a 3-node mesh (pprof); batching pays where calls overlap,
// under load. At low load nothing changes: a lone call never waits for
// company.
//
// The store batches replica writes (In an entry, Out nothing) and
// single-key reads (In a key, Out the records of every key of the batch,
// which each reader only reads).
type batches[In, Out any] struct {
	wg    *sync.WaitGroup // counts the senders, for the store's Close
	mu    sync.Mutex
	peers map[string]*batch[In, Out]
}

// batch is one peer's queue of calls.
type batch[In, Out any] struct {
	items   []In
	waiters []chan batchResult[Out]
	sending bool // a sender goroutine is running for this peer
}

type batchResult[Out any] struct {
	out Out
	err error
}

// do sends item to node within the batch of calls under way to it, and
// returns the answer to the RPC that carried it. send makes one RPC of a
// batch.
func (b *batches[In, Out]) do(ctx context.Context, node string, item In, send func(context.Context, []In) (Out, error)) (Out, error) {
	done := make(chan batchResult[Out], 1)
	b.mu.Lock()
	if b.peers == nil {
		b.peers = make(map[string]*batch[In, Out])
	}
	q := b.peers[node]
	if q == nil {
		q = &batch[In, Out]{}
		b.peers[node] = q
	}
	q.items = append(q.items, item)
	q.waiters = append(q.waiters, done)
	start := !q.sending
	q.sending = true
	b.mu.Unlock()
	if start {
		// A sender runs while calls keep coming, and ends when its
		// peer's queue is empty.
		b.wg.Add(1)
		go b.drain(context.WithoutCancel(ctx), q, send)
	}
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
		var zero Out
		return zero, fmt.Errorf("batched call to %s: %w", node, ctx.Err())
	}
}

// drain sends q's queue until it is empty.
func (b *batches[In, Out]) drain(ctx context.Context, q *batch[In, Out], send func(context.Context, []In) (Out, error)) {
	defer b.wg.Done()
	// A new goroutine per burst, whose RPC goes deep into gRPC: its stack
	// grows once here rather than step by step under the call.
	growstack.Grow()
	for {
		b.mu.Lock()
		n := min(len(q.items), maxBatchEntries)
		if n == 0 {
			q.sending = false
			q.items, q.waiters = nil, nil
			b.mu.Unlock()
			return
		}
		items := q.items[:n:n]
		waiters := q.waiters[:n:n]
		q.items, q.waiters = q.items[n:], q.waiters[n:]
		b.mu.Unlock()
		out, err := send(ctx, items)
		for _, w := range waiters {
			w <- batchResult[Out]{out, err}
		}
	}
}
