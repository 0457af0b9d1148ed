package presence_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/overlay/store"
	"github.com/sipmesh/sipmesh/roles/presence"
	"github.com/sipmesh/sipmesh/roles/presence/ringstore"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

const (
	domain = "example.test"
	role   = certs.RolePresence
)

// tnode is one in-process node: RPC server and client, the presence
// store, the agent, and a SIP UDP listener on its own loopback address
// whose handler plays the edge: it hands PUBLISH and SUBSCRIBE to the
// agent of the presentity's ring owner (the real edge forwards over SIP).
type tnode struct {
	name    string
	ip      string
	sipAddr string
	srv     *rpc.Server
	client  *rpc.Client
	store   *store.Store
	rs      *ringstore.Store
	agent   *presence.Agent
	ua      *sipgo.UserAgent
	down    atomic.Bool
}

type cluster struct {
	t       testing.TB
	ca      *rpctest.CA
	members *rpctest.Membership
	mu      sync.Mutex
	nodes   []*tnode
	opts    []presence.Option
}

// newCluster starts n nodes on 127.0.60.1, .2, … with the agent options.
func newCluster(t testing.TB, n int, opts ...presence.Option) *cluster {
	t.Helper()
	c := &cluster{t: t, ca: rpctest.NewCA(t), members: rpctest.NewMembership(0), opts: opts}
	for i := range n {
		c.start(fmt.Sprintf("p%d", i+1), fmt.Sprintf("127.0.60.%d", i+1))
	}
	return c
}

func (c *cluster) start(name, ip string) *tnode {
	t := c.t
	t.Helper()
	n := &tnode{name: name, ip: ip}
	mat := c.ca.Material(certs.IssueRequest{Name: name, Roles: []string{role}})
	srv, err := rpc.NewServer(rpc.ServerConfig{Material: mat})
	if err != nil {
		t.Fatal(err)
	}
	reg := store.NewRegistry()
	reg.Register(srv)
	addr, err := srv.Listen(ip + ":0")
	if err != nil {
		t.Fatal(err)
	}
	c.members.Set(overlay.Member{Name: name, Datacenter: mat.Self.Datacenter, Roles: mat.Self.Roles, Services: map[string]string{overlay.ServiceRPC: addr.String()}})
	view := c.members.View(name)
	cl, err := rpc.NewClient(rpc.ClientConfig{Material: mat}, view)
	if err != nil {
		t.Fatal(err)
	}
	cfg := store.DefaultConfig(role)
	cfg.Merger = ringstore.Merger
	cfg.AntiEntropyInterval = 300 * time.Millisecond
	cfg.RPCTimeout = 5 * time.Second
	st, err := store.New(cfg, view, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(st); err != nil {
		t.Fatal(err)
	}
	n.srv, n.client, n.store, n.rs = srv, cl, st, ringstore.New(st, name)

	conn, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	n.sipAddr = conn.LocalAddr().String()
	n.ua, err = sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname(ip))
	if err != nil {
		t.Fatal(err)
	}
	sipSrv, err := sipgo.NewServer(n.ua)
	if err != nil {
		t.Fatal(err)
	}
	sipCl, err := sipgo.NewClient(n.ua, sipgo.WithClientAddr(n.sipAddr), sipgo.WithClientConnectionAddr(n.sipAddr))
	if err != nil {
		t.Fatal(err)
	}
	n.agent, err = presence.New(n.rs, presence.ClientSender{Client: sipCl}, c.opts...)
	if err != nil {
		t.Fatal(err)
	}
	n.agent.Start()
	_, portStr, _ := net.SplitHostPort(n.sipAddr)
	var port int
	fmt.Sscan(portStr, &port)
	self := sip.Uri{Scheme: "sip", Host: ip, Port: port, UriParams: sip.NewParams()}
	self.UriParams.Add("lr", "")
	edge := func(req *sip.Request, tx sip.ServerTransaction) {
		key := presence.Key(req.Recipient)
		o := c.owner(key)
		if o == nil {
			tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
			return
		}
		if o != n && req.Method == sip.SUBSCRIBE {
			// The edge record-routes what it forwards, so that the
			// owner's NOTIFYs come back through it (RFC 3261 §16.6
			// step 4).
			req.PrependHeader(&sip.RecordRouteHeader{Address: self})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := o.agent.ServeSIP(ctx, req, tx); err != nil {
			tx.Respond(sipstatus.Response(req, err))
		}
	}
	sipSrv.OnPublish(edge)
	sipSrv.OnSubscribe(edge)
	sipSrv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) { relay(sipCl, self, req, tx) })
	serveUDP(t, n.ua, sipSrv, conn)
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	t.Cleanup(func() { c.stop(n) })
	return n
}

// stop shuts a node down without telling anyone (a crash when the
// membership is not told either).
func (c *cluster) stop(n *tnode) {
	if n.down.Swap(true) {
		return
	}
	n.agent.Close()
	n.ua.Close()
	n.srv.Stop()
	n.store.Close()
	n.client.Close()
}

// crash kills a node: it vanishes from the membership (failure detected)
// and stops answering.
func (c *cluster) crash(n *tnode) {
	c.members.SetState(n.name, overlay.StateDead)
	c.stop(n)
}

// owner is the presentity's ring owner, as the edge would find it.
func (c *cluster) owner(key string) *tnode {
	reps := c.members.Ring(role).Replicas(key, 1)
	if len(reps) == 0 {
		return nil
	}
	return c.node(reps[0].Name)
}

func (c *cluster) node(name string) *tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// other returns a node up that is not n.
func (c *cluster) other(n *tnode) *tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.nodes {
		if x != n && !x.down.Load() {
			return x
		}
	}
	c.t.Fatal("no other node up")
	return nil
}

// records returns the live records of key decoded by kind.
func (c *cluster) records(key string) (pubs []presence.Publication, subs []presence.Subscription) {
	c.t.Helper()
	var via *tnode
	for _, n := range c.nodes {
		if !n.down.Load() {
			via = n
			break
		}
	}
	recs, err := via.rs.Get(context.Background(), key)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range recs {
		if r.Deleted {
			continue
		}
		var p presence.Publication
		var s presence.Subscription
		switch {
		case decodeKind(r.Value, presence.KindPublication, &p):
			pubs = append(pubs, p)
		case decodeKind(r.Value, presence.KindSubscription, &s):
			subs = append(subs, s)
		}
	}
	return pubs, subs
}

// ua is a test SIP user agent on its own loopback address: it sends
// PUBLISH and SUBSCRIBE and answers NOTIFYs (200, or the status set).
type ua struct {
	t        testing.TB
	user     string
	addr     string
	ua       *sipgo.UserAgent
	client   *sipgo.Client
	notifies chan *sip.Request
	status   atomic.Int32
	hook     atomic.Pointer[func(*sip.Request)] // replaces notifies when set

	// the subscription dialog
	callID, fromTag, toTag string
	cseq                   uint32
	presentity             string
}

var uaIP atomic.Int32

func newUA(t testing.TB, user string) *ua {
	t.Helper()
	ip := fmt.Sprintf("127.0.60.%d", 100+uaIP.Add(1)%150)
	conn, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	u := &ua{t: t, user: user, addr: conn.LocalAddr().String(), notifies: make(chan *sip.Request, 100)}
	u.status.Store(200)
	u.ua, err = sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname(ip))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(u.ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		code := int(u.status.Load())
		tx.Respond(sip.NewResponseFromRequest(req, code, sipstatus.ReasonPhrase(code), nil))
		if h := u.hook.Load(); h != nil {
			(*h)(req)
			return
		}
		if code == 200 {
			select {
			case u.notifies <- req:
			default:
			}
		}
	})
	u.client, err = sipgo.NewClient(u.ua, sipgo.WithClientAddr(u.addr), sipgo.WithClientConnectionAddr(u.addr))
	if err != nil {
		t.Fatal(err)
	}
	serveUDP(t, u.ua, srv, conn)
	t.Cleanup(func() { u.ua.Close() })
	return u
}

func (u *ua) aor() string { return u.user + "@" + domain }

func (u *ua) do(to string, req *sip.Request) *sip.Response {
	u.t.Helper()
	req.SetDestination(to)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := u.client.Do(ctx, req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", req.Method, req.Recipient.String(), err)
	}
	return res
}

func presURI(key string) sip.Uri {
	user, host, _ := strings.Cut(key, "@")
	return sip.Uri{Scheme: "sip", User: user, Host: host}
}

// subscribe starts a subscription to presentity through node addr.
func (u *ua) subscribe(addr, presentity string, expires int, hdrs ...sip.Header) *sip.Response {
	u.t.Helper()
	u.presentity = presentity
	u.callID = sip.GenerateTagN(20)
	u.fromTag = sip.GenerateTagN(10)
	u.cseq = 1
	req := u.subscribeReq(expires, "")
	for _, h := range hdrs {
		req.ReplaceHeader(h)
	}
	res := u.do(addr, req)
	if res.StatusCode < 300 {
		u.toTag, _ = res.To().Params.Get("tag")
	}
	return res
}

// resubscribe refreshes (or ends, expires 0) the subscription.
func (u *ua) resubscribe(addr string, expires int) *sip.Response {
	u.t.Helper()
	u.cseq++
	return u.do(addr, u.subscribeReq(expires, u.toTag))
}

func (u *ua) subscribeReq(expires int, toTag string) *sip.Request {
	req := sip.NewRequest(sip.SUBSCRIBE, presURI(u.presentity))
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: u.user, Host: domain}, Params: sip.NewParams()}
	from.Params.Add("tag", u.fromTag)
	to := &sip.ToHeader{Address: presURI(u.presentity), Params: sip.NewParams()}
	if toTag != "" {
		to.Params.Add("tag", toTag)
	}
	host, port, _ := net.SplitHostPort(u.addr)
	var p int
	fmt.Sscan(port, &p)
	callID := sip.CallIDHeader(u.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: u.cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: u.user, Host: host, Port: p}})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Accept", presence.ContentTypePIDF))
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	return req
}

// publish sends a PUBLISH for the ua's own AOR through addr. etag "" is
// an initial publication; body "" none; event "" is presence.
func (u *ua) publish(addr, etag string, expires int, body string, hdrs ...sip.Header) *sip.Response {
	u.t.Helper()
	req := sip.NewRequest(sip.PUBLISH, presURI(u.aor()))
	from := &sip.FromHeader{Address: presURI(u.aor()), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: presURI(u.aor())})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	if etag != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", etag))
	}
	if body != "" {
		ct := sip.ContentTypeHeader(presence.ContentTypePIDF)
		req.AppendHeader(&ct)
		req.SetBody([]byte(body))
	}
	for _, h := range hdrs {
		req.ReplaceHeader(h)
	}
	return u.do(addr, req)
}

// next waits for the next NOTIFY.
func (u *ua) next(timeout time.Duration) *sip.Request {
	u.t.Helper()
	select {
	case n := <-u.notifies:
		return n
	case <-time.After(timeout):
		u.t.Fatalf("%s: no NOTIFY within %v", u.user, timeout)
		return nil
	}
}

// none checks that no NOTIFY arrives within d.
func (u *ua) none(d time.Duration) {
	u.t.Helper()
	select {
	case n := <-u.notifies:
		u.t.Fatalf("%s: unexpected NOTIFY %s\n%s", u.user, n.GetHeader("Subscription-State").Value(), n.Body())
	case <-time.After(d):
	}
}

func pidf(entity string, tuples ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + entity + `">`)
	for _, t := range tuples {
		id, basic, _ := strings.Cut(t, "=")
		b.WriteString(`<tuple id="` + id + `"><status><basic>` + basic + `</basic></status></tuple>`)
	}
	b.WriteString(`</presence>`)
	return b.String()
}

// tuples lists "id=basic" of a PIDF body, in order.
func tuples(t testing.TB, body []byte) []string {
	t.Helper()
	var out []string
	s := string(body)
	for {
		i := strings.Index(s, `<tuple id="`)
		if i < 0 {
			return out
		}
		s = s[i+len(`<tuple id="`):]
		id, rest, _ := strings.Cut(s, `"`)
		_, after, ok := strings.Cut(rest, "<basic>")
		basic, _, _ := strings.Cut(after, "</basic>")
		if !ok {
			basic = "?"
		}
		out = append(out, id+"="+basic)
		s = rest
	}
}

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func sortedEq(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// serveUDP serves conn and waits until sipgo's transport layer knows it,
// so that clients bound to its address send from it.
func serveUDP(t testing.TB, u *sipgo.UserAgent, srv *sipgo.Server, conn net.PacketConn) {
	t.Helper()
	go srv.ServeUDP(conn)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := u.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP listener %s not registered", conn.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
}

// relay is the edge's proxying of an in-dialog request that names it in
// its top Route (RFC 3261 §16.4, §16.6, §16.7): the Route is removed, a
// Via added, and the final response relayed back without that Via.
func relay(cl *sipgo.Client, self sip.Uri, req *sip.Request, tx sip.ServerTransaction) {
	out := req.Clone()
	if r := out.Route(); r != nil && r.Address.Host == self.Host && r.Address.Port == self.Port {
		out.RemoveHeader("Route")
	}
	// sipgo keeps the parsed Route after RemoveHeader: say where to go.
	if r := out.Route(); r != nil && !(r.Address.Host == self.Host && r.Address.Port == self.Port) {
		out.SetDestination(fmt.Sprintf("%s:%d", r.Address.Host, r.Address.Port))
	} else {
		out.SetDestination(fmt.Sprintf("%s:%d", out.Recipient.Host, out.Recipient.Port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctl, err := cl.TransactionRequest(ctx, out, sipgo.ClientRequestAddVia, sipgo.ClientRequestDecreaseMaxForward)
	if err != nil {
		tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
		return
	}
	defer ctl.Terminate()
	for {
		select {
		case res := <-ctl.Responses():
			if res.IsProvisional() {
				continue
			}
			res = res.Clone()
			res.RemoveHeader("Via")
			res.SetDestination("") // it was where the response came from
			tx.Respond(res)
			return
		case <-ctl.Done():
			tx.Respond(sip.NewResponseFromRequest(req, 408, "Request Timeout", nil))
			return
		}
	}
}
