package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// EventPresence is the only event package the agent serves (RFC 3856).
const EventPresence = "presence"

// Responder sends the final response of a server transaction;
// sip.ServerTransaction is one.
type Responder interface {
	Respond(res *sip.Response) error
}

// Agent is the presence agent of one node.
type Agent struct {
	store  Store
	sender Sender
	auth   Authorizer
	log    *slog.Logger
	now    func() time.Time

	pubMin, pubMax, pubDef time.Duration
	subMin, subMax, subDef time.Duration
	grace                  time.Duration
	sweepEvery             time.Duration
	notifyTimeout          time.Duration
	contact                func(presentity string) string

	keys   keyLocks
	qmu    sync.Mutex
	queues map[string]*dialogQueue    // by key + "\x00" + dialog id
	stale  map[string]map[string]bool // key -> dialogs to send the state again

	wg      sync.WaitGroup // NOTIFYs in flight and the sweeper
	closing sync.RWMutex   // orders wg.Add (read) before Close's Wait
	ctx     context.Context
	cancel  context.CancelFunc
	started sync.Once
}

// Option configures an Agent.
type Option func(*Agent)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(a *Agent) {
		if l != nil {
			a.log = l
		}
	}
}

// WithAuthorizer sets the watcher authorization rules (default SameDomain).
func WithAuthorizer(z Authorizer) Option {
	return func(a *Agent) {
		if z != nil {
			a.auth = z
		}
	}
}

// WithPublicationExpiry sets the minimum, maximum and default lifetime of a
// publication (defaults 60 s, 2 h, 1 h). Zero keeps a default.
func WithPublicationExpiry(min, max, def time.Duration) Option {
	return func(a *Agent) { setExpiry(&a.pubMin, &a.pubMax, &a.pubDef, min, max, def) }
}

// WithSubscriptionExpiry sets the minimum, maximum and default lifetime of
// a subscription (defaults 60 s, 2 h, 1 h). Zero keeps a default.
func WithSubscriptionExpiry(min, max, def time.Duration) Option {
	return func(a *Agent) { setExpiry(&a.subMin, &a.subMax, &a.subDef, min, max, def) }
}

func setExpiry(pmin, pmax, pdef *time.Duration, min, max, def time.Duration) {
	if min > 0 {
		*pmin = min
	}
	if max > 0 {
		*pmax = max
	}
	if def > 0 {
		*pdef = def
	}
}

// WithGrace sets how long records stay in the store after they expire so
// that the owner's sweep still sees them (default 2 min; it must exceed
// the time to detect a dead owner plus the sweep interval).
func WithGrace(d time.Duration) Option {
	return func(a *Agent) {
		if d > 0 {
			a.grace = d
		}
	}
}

// WithSweepInterval sets how often the keys this node owns are checked
// for expired publications and subscriptions (default 1 s).
func WithSweepInterval(d time.Duration) Option {
	return func(a *Agent) {
		if d > 0 {
			a.sweepEvery = d
		}
	}
}

// WithNotifyTimeout bounds one NOTIFY transaction (default 32 s, Timer F).
func WithNotifyTimeout(d time.Duration) Option {
	return func(a *Agent) {
		if d > 0 {
			a.notifyTimeout = d
		}
	}
}

// WithContact sets the Contact URI the agent puts in its responses and
// NOTIFYs for a presentity ("user@domain"). The default,
// "sip:user@domain", makes the watcher's in-dialog SUBSCRIBEs reach the
// mesh by the domain, so that the edge hands them to whichever node owns
// the presentity then.
func WithContact(f func(presentity string) string) Option {
	return func(a *Agent) {
		if f != nil {
			a.contact = f
		}
	}
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(a *Agent) { a.now = now } }

// New returns an agent storing in st and sending NOTIFYs with s. Call
// Start to run its expiry sweep, Close to stop.
func New(st Store, s Sender, opts ...Option) (*Agent, error) {
	if st == nil || s == nil {
		return nil, errors.New("presence: a store and a sender are required")
	}
	a := &Agent{
		store: st, sender: s, auth: SameDomain, log: slog.New(slog.DiscardHandler), now: time.Now,
		pubMin: 60 * time.Second, pubMax: 2 * time.Hour, pubDef: time.Hour,
		subMin: 60 * time.Second, subMax: 2 * time.Hour, subDef: time.Hour,
		grace: 2 * time.Minute, sweepEvery: time.Second, notifyTimeout: 32 * time.Second,
		contact: func(p string) string { return "sip:" + p },
		queues:  map[string]*dialogQueue{},
	}
	for _, o := range opts {
		o(a)
	}
	if a.pubMin > a.pubMax || a.subMin > a.subMax {
		return nil, fmt.Errorf("presence: minimum expiry exceeds maximum (publications %v > %v or subscriptions %v > %v)", a.pubMin, a.pubMax, a.subMin, a.subMax)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Start runs the expiry sweep until Close.
func (a *Agent) Start() {
	a.started.Do(func() { a.goAgent(a.sweepLoop) })
}

// Close stops the sweep and waits for the NOTIFYs in flight (each bounded
// by the NOTIFY timeout; Close cancels them).
func (a *Agent) Close() error {
	a.closing.Lock()
	a.cancel()
	a.closing.Unlock()
	a.wg.Wait()
	return nil
}

// goAgent runs f in a goroutine Close waits for, unless the agent is
// closed.
func (a *Agent) goAgent(f func()) {
	a.closing.RLock()
	defer a.closing.RUnlock()
	if a.ctx.Err() != nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// Handles reports whether the agent serves req: a PUBLISH (any event; the
// agent answers 489 to others), or a SUBSCRIBE for the presence event.
func Handles(req *sip.Request) bool {
	switch req.Method {
	case sip.PUBLISH:
		return true
	case sip.SUBSCRIBE:
		ev, _ := eventOf(req)
		return ev == EventPresence
	}
	return false
}

// ServeSIP processes a PUBLISH or SUBSCRIBE that reached the presentity's
// owner. It sends the final response itself through tx; when it returns
// an error it has sent nothing and the caller answers
// sipstatus.Response(req, err).
func (a *Agent) ServeSIP(ctx context.Context, req *sip.Request, tx Responder) error {
	var (
		res *sip.Response
		err error
	)
	switch req.Method {
	case sip.PUBLISH:
		res, err = a.Publish(ctx, req)
		if err != nil {
			return err
		}
		return tx.Respond(res)
	case sip.SUBSCRIBE:
		return a.Subscribe(ctx, req, tx)
	}
	return sipstatus.New(405, "", fmt.Errorf("%w: %s", ErrMethod, req.Method), sip.NewHeader("Allow", "PUBLISH, SUBSCRIBE"))
}

// Key returns the store key of a SIP URI: "user@domain", the host
// lower-cased (registrar.AOR's form).
func Key(u sip.Uri) string { return u.User + "@" + strings.ToLower(u.Host) }

// presentityOf returns the key of the request's presentity: the
// Request-URI, or the To URI when the Request-URI has no user part (an
// in-dialog request sent to a node's own Contact).
func presentityOf(req *sip.Request) (string, error) {
	u := req.Recipient
	if u.User == "" {
		if to := req.To(); to != nil {
			u = to.Address
		}
	}
	if u.User == "" || u.Host == "" {
		return "", badRequest("Missing presentity", fmt.Errorf("%w: no user in %s", ErrBadRequest, req.Recipient.String()))
	}
	return Key(u), nil
}

// eventOf returns the event package and its id parameter (RFC 6665 §8.2.1).
func eventOf(req *sip.Request) (pkg, id string) {
	h := sipmsg.Header(req, "Event")
	if h == nil {
		h = sipmsg.Header(req, "o") // compact form
	}
	if h == nil {
		return "", ""
	}
	parts := strings.Split(h.Value(), ";")
	pkg = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "id") {
			id = strings.TrimSpace(v)
		}
	}
	return pkg, id
}

// expiresOf returns the Expires header in seconds, or def when absent.
func expiresOf(req *sip.Request, def time.Duration) (time.Duration, error) {
	h := sipmsg.Header(req, "Expires")
	if h == nil {
		return def, nil
	}
	var n uint64
	v := strings.TrimSpace(h.Value())
	if v == "" {
		return 0, badRequest("Bad Expires", fmt.Errorf("%w: empty Expires", ErrBadRequest))
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, badRequest("Bad Expires", fmt.Errorf("%w: Expires %q", ErrBadRequest, v))
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<32 {
			n = 1 << 32
		}
	}
	return time.Duration(n) * time.Second, nil
}

// grant applies the minimum and maximum to a requested lifetime: 423
// below the minimum (0 is a removal and always allowed), capped at the
// maximum.
func grant(req, lo, hi time.Duration) (time.Duration, error) {
	if req == 0 {
		return 0, nil
	}
	if req < lo {
		return 0, sipstatus.IntervalTooBrief(lo, fmt.Errorf("presence: expiry %v below the minimum %v", req, lo))
	}
	return min(req, hi), nil
}

// keyLocks serialises the work on one presentity on this node.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu  sync.Mutex
	ref int
}

func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.ref++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.ref--; l.ref == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
