package proxy

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// ErrOverload is why a request got 503: the node's queue was full.
var ErrOverload = errors.New("proxy: overloaded, queue full")

// REGISTERs over UDP to a node that is itself a registrar take a stateless
// path, as Kamailio's sl_send_reply registrars do: the datagram is parsed
// once (sipgo never reads it), queued for a fixed pool of workers, and
// answered from the listening socket. A server transaction would hold the
// parsed request and response for Timer J, 32 s after the answer (RFC 3261
// §17.2.2); at thousands of REGISTERs a second that is most of a node's
// memory. What the transaction is for, answering a retransmission with the
// same response, is done two ways: the registrar takes a REGISTER with the
// CSeq it already has for the Call-ID as a retransmission and changes
// nothing (as Kamailio's does), and a REGISTER with credentials, which a
// second pass would refuse as a nonce-count replay (RFC 7616 §3.4), is
// remembered in replyCache: a hash of its octets, and when it was not
// accepted the response's octets. A retransmission, octet for octet, of
// one that was accepted goes through the registrar again with its
// credentials taken as verified (Registrar.Reregister), and gets the
// bindings as they are; one that was not gets the same response again.
// Keeping every 200 for Timer J instead took hundreds of MB at 15,000
// REGISTERs a second, and the collector's work on them showed in the
// latency. The queue is bounded: when it is full the REGISTER gets 503
// with Retry-After (RFC 3261 §21.5.4), so an overloaded node sheds load
// instead of growing without bound.
const (
	registerWorkers      = 64
	defaultRegisterQueue = 4096
	// overloadRetry is the Retry-After of the 503 sent when shedding.
	overloadRetry = 5 * time.Second
)

type registerJob struct {
	req   *sip.Request
	props sip.TransportReadProps
	// cached: the REGISTER carries credentials, and key and sum are its
	// place in replyCache; one without them is not remembered.
	cached bool
	key    uint64
	sum    uint64 // hash of the datagram
	// again: a retransmission of an accepted REGISTER with credentials.
	again bool
	// alone: the node held the registrar's state by itself when the
	// REGISTER was taken (asked once: it locks the store's view).
	alone bool
	// queued: when it went into the workers' queue (stale.go: late).
	queued time.Time
}

// statelessRegister is the state of the stateless path.
type statelessRegister struct {
	q       chan registerJob
	replies *replyCache
	seed    maphash.Seed
	shed    atomic.Uint64
	// shedLogged limits the log of shedding to a line a second.
	shedLogged onceEvery
	// wire holds *bytes.Buffer for serializing answers: a REGISTER's
	// answer is written once and, unless cached, dropped at once.
	wire sync.Pool
}

func newStatelessRegister(queue int, wait time.Duration) *statelessRegister {
	return &statelessRegister{q: make(chan registerJob, queue), replies: newRecent[reply](wait), seed: maphash.MakeSeed(),
		shedLogged: onceEvery{every: time.Second}}
}

// takeRegister is the read filter's hook (sipmsg.Validator.DatagramFilter):
// it takes a REGISTER that this node answers itself and that needs none of
// the proxy's routing, and leaves anything else to sipgo.
func (p *Proxy) takeRegister(props sip.TransportReadProps, data []byte, msg sip.Message) bool {
	req, ok := msg.(*sip.Request)
	if !ok || req.Method != sip.REGISTER || p.cfg.Registrar == nil || p.stateless == nil ||
		!strings.EqualFold(props.Transport, "udp") || props.RemoteAddr == nil || !p.statelessOK(req) {
		return false
	}
	s := p.stateless
	src := props.RemoteAddr.String()
	// What sipgo's transport would have recorded (RFC 3581 §6).
	req.SetTransport("UDP")
	req.SetSource(src)
	j := registerJob{req: req, props: props}
	// Only a REGISTER with credentials is remembered: one without is
	// processed again if retransmitted, which changes nothing (the
	// registrar's CSeq check), and the cache's lock and map writes are
	// not worth it on every REGISTER.
	if sipmsg.Header(req, "Authorization") != nil {
		j.cached, j.key, j.sum = true, s.key(src, req), maphash.Bytes(s.seed, data)
		switch r, seen := s.replies.reserve(j.key, reply{sum: j.sum}); {
		case !seen:
		case r.sum != j.sum:
			// Not a retransmission, though its transaction's key is one
			// already seen: processed on its own, its credentials checked.
		case r.resp != nil:
			// A retransmission: the same response again (RFC 3261 §17.2.2).
			p.writeUDP(props, req, r.resp)
			return true
		case r.accepted:
			j.again = true
		default:
			return true // a retransmission of a REGISTER still being processed
		}
	}
	if j.alone = p.cfg.Mesh.Alone(); j.alone {
		// Nothing to wait for: answered in the reading goroutine, as a
		// Kamailio process does, sparing a hand-off to a worker.
		p.answerRegister(j)
		return true
	}
	j.queued = p.stale.now() // the clock late reads
	select {
	case s.q <- j:
	default:
		if j.cached {
			s.replies.forget(j.key)
		}
		n := s.shed.Add(1)
		if s.shedLogged.due(time.Now()) {
			p.log.Warn("proxy: overloaded: REGISTER queue full, answering 503", "queue", cap(s.q), "shed_total", n)
		}
		if res := sipstatus.Response(req, sipstatus.ServiceUnavailable(overloadRetry, ErrOverload)); res != nil {
			p.writeUDP(props, req, []byte(res.String()))
		}
	}
	return true
}

// statelessOK reports whether req can be answered here without the
// proxy's routing: Max-Forwards left (§16.3 step 3), no Via of ours (a
// loop, step 4), and a route set, if any, that names only this node (step
// 6 of §16.4 then removes it) and no flow of it (which would route the
// request there).
func (p *Proxy) statelessOK(req *sip.Request) bool {
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return false
	}
	if !strings.EqualFold(req.Recipient.Host, p.cfg.Domain) {
		return false
	}
	for h := range sipmsg.Headers(req, "Via") {
		if v, ok := h.(*sip.ViaHeader); ok && p.self[v.Host] && p.ports[v.Port] {
			return false
		}
	}
	for h := range sipmsg.Headers(req, "Route") {
		r, ok := h.(*sip.RouteHeader)
		if !ok || !p.isOwn(r.Address) || strings.HasPrefix(r.Address.User, flowPrefix) {
			return false
		}
	}
	req.RemoveHeader("Route")
	return true
}

// registerWorker answers queued REGISTERs until the proxy stops.
func (p *Proxy) registerWorker() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case j := <-p.stateless.q:
			if p.stale.late(j.queued) {
				if j.cached {
					p.stateless.replies.forget(j.key) // its retransmission is processed
				}
				continue
			}
			p.answerRegister(j)
		}
	}
}

// answerRegister processes a REGISTER of the stateless path and sends its
// response.
func (p *Proxy) answerRegister(j registerJob) {
	s := p.stateless
	in := p.inbound(j.req, nil)
	in.source = j.props.RemoteAddr
	ctx := p.ctx
	if !j.alone {
		// Replicas are written over the network: bounded. Alone, the
		// store is this process's memory, and a deadline's timer would
		// cost more than the REGISTER.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(p.ctx, maxTransaction)
		defer cancel()
	}
	res, err := p.registerHere(ctx, in, j.again)
	if err != nil {
		p.logFailure(in, err)
		res = sipstatus.Response(j.req, err)
	}
	if res == nil {
		if j.cached {
			s.replies.forget(j.key)
		}
		return
	}
	buf, _ := s.wire.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	res.StringWrite(buf)
	switch {
	case !j.cached:
	case res.StatusCode/100 == 2:
		s.replies.put(j.key, reply{sum: j.sum, accepted: true})
	default:
		s.replies.put(j.key, reply{sum: j.sum, resp: bytes.Clone(buf.Bytes())})
	}
	p.writeUDP(j.props, j.req, buf.Bytes())
	s.wire.Put(buf)
}

// writeUDP sends a response from the socket the request came to, to where
// RFC 3261 §18.2.2 and RFC 3581 §4 say: the source address, at rport when
// the client asked for it, else at the port of the topmost Via.
func (p *Proxy) writeUDP(props sip.TransportReadProps, req *sip.Request, b []byte) {
	conn, ok := p.udpSocket(props.LocalAddr)
	if !ok {
		return
	}
	to := props.RemoteAddr
	if v := req.Via(); v != nil {
		if _, rport := v.Params.Get("rport"); !rport {
			port := v.Port
			if port == 0 {
				port = 5060
			}
			if u, ok := asUDPAddr(to); ok && u.Port != port {
				to = &net.UDPAddr{IP: u.IP, Port: port, Zone: u.Zone}
			}
		}
	}
	if _, err := conn.WriteTo(b, to); err != nil {
		p.log.Debug("proxy: response not sent", "to", to.String(), "err", err)
	}
}

// key identifies a REGISTER and its retransmissions (requestKey).
func (s *statelessRegister) key(src string, req *sip.Request) uint64 {
	return requestKey(s.seed, src, req)
}

// replyCache remembers the REGISTERs with credentials of the stateless
// path for at least Timer J.
type replyCache = recent[reply]

// reply is what a REGISTER got; with neither accepted nor resp, it is
// still being processed.
type reply struct {
	sum      uint64 // hash of the REGISTER's octets
	accepted bool   // answered 2xx
	resp     []byte // the response's octets, when not accepted
}
