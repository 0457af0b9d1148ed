package digest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Causes of Verify's errors, reachable with errors.Is.
var (
	ErrNoCredentials        = errors.New("digest: no credentials for the realm")
	ErrMalformed            = errors.New("digest: malformed credentials")
	ErrURIMismatch          = errors.New("digest: digest-uri is not the Request-URI")
	ErrUnsupportedAlgorithm = errors.New("digest: algorithm not offered")
	ErrAlgorithmUnavailable = errors.New("digest: no HA1 of the user for the algorithm")
	ErrInvalidNonce         = errors.New("digest: nonce not issued by this cluster")
	ErrStaleNonce           = errors.New("digest: nonce is stale")
	ErrForeignNonce         = errors.New("digest: nonce issued by another node")
	ErrReplay               = errors.New("digest: nonce-count replayed")
	ErrUnknownUser          = errors.New("digest: unknown user")
	ErrWrongPassword        = errors.New("digest: wrong password")
)

// Credentials are what a Users implementation knows of a user: the password,
// or HA1 = H(user ":" realm ":" password) per algorithm as lower-case hex.
type Credentials struct {
	Password string
	HA1      map[Algorithm]string
}

// ha1 returns the HA1 for an algorithm, computing it from the password when
// one is known.
func (c Credentials) ha1(alg Algorithm, user, realm string) (string, bool) {
	if h, ok := c.HA1[alg]; ok && h != "" {
		return strings.ToLower(h), true
	}
	if c.Password != "" {
		return HA1(alg, user, realm, c.Password), true
	}
	return "", false
}

// algorithms lists which of the offered algorithms the credentials can serve.
func (c Credentials) algorithms(offered []Algorithm) []Algorithm {
	var out []Algorithm
	for _, a := range offered {
		if _, ok := c.ha1(a, "", ""); ok {
			out = append(out, a)
		}
	}
	return out
}

// Users looks up credentials. Lookup returns an error wrapping ErrUnknownUser
// when there is no such user in the realm (the realm is the SIP domain).
type Users interface {
	Lookup(ctx context.Context, user, realm string) (Credentials, error)
}

// Config is the configuration shared by every node of the cluster.
type Config struct {
	// Secret is the cluster-wide secret that nonces are signed with; every
	// node must use the same one. At least 16 bytes.
	Secret []byte
	// NonceLifetime is how long a nonce is accepted before it is stale
	// (default 5 minutes).
	NonceLifetime time.Duration
	// Algorithms are offered in this order (default SHA-256, then MD5).
	Algorithms []Algorithm
	// Issuer names this node. When set, a node accepts only the nonces it
	// issued: a nonce of another node, with the right password, gets a
	// fresh challenge with stale=true (RFC 7616 §3.3), so the client
	// retries without asking its user, and nonce-counts are tracked where
	// the nonce was issued, in memory, with no round trip to other nodes.
	// Empty: any node's nonce is accepted, and replays across nodes are
	// caught only by a shared NonceCounter.
	Issuer string
}

// Authenticator issues challenges and verifies credentials.
type Authenticator struct {
	cfg     Config
	users   Users
	nonces  *nonces
	counter NonceCounter
	now     func() time.Time
	realmOf func(req *sip.Request, proxy bool) string
	log     *slog.Logger
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithNonceCounter sets where nonce-counts are tracked (default: a
// MemoryCounter of this process).
func WithNonceCounter(c NonceCounter) Option {
	return func(a *Authenticator) {
		if c != nil {
			a.counter = c
		}
	}
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option {
	return func(a *Authenticator) {
		if now != nil {
			a.now = now
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(a *Authenticator) {
		if l != nil {
			a.log = l
		}
	}
}

// WithRealm sets how Verify picks the realm of a request. The default is the
// host of the To URI for a UAS or registrar challenge (RFC 3261 §22.1: the
// realm is the domain; for REGISTER that of the AOR) and the host of the From
// URI for a proxy challenge.
func WithRealm(f func(req *sip.Request, proxy bool) string) Option {
	return func(a *Authenticator) {
		if f != nil {
			a.realmOf = f
		}
	}
}

// New returns an Authenticator.
func New(cfg Config, users Users, opts ...Option) (*Authenticator, error) {
	if len(cfg.Secret) < 16 {
		return nil, fmt.Errorf("digest: the cluster secret must be at least 16 bytes, got %d", len(cfg.Secret))
	}
	if users == nil {
		return nil, errors.New("digest: no Users given")
	}
	if cfg.NonceLifetime <= 0 {
		cfg.NonceLifetime = 5 * time.Minute
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []Algorithm{SHA256, MD5}
	}
	seen := map[Algorithm]bool{}
	for _, alg := range cfg.Algorithms {
		if _, err := ParseAlgorithm(string(alg)); err != nil || alg == "" {
			return nil, fmt.Errorf("digest: algorithm %q is not supported (use %s or %s)", alg, SHA256, MD5)
		}
		if seen[alg] {
			return nil, fmt.Errorf("digest: algorithm %s listed twice", alg)
		}
		seen[alg] = true
	}
	a := &Authenticator{
		cfg:     cfg,
		users:   users,
		nonces:  newNonces(cfg.Secret, cfg.Issuer, rand.Reader),
		counter: nil,
		now:     time.Now,
		realmOf: defaultRealm,
		log:     slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(a)
	}
	if a.counter == nil {
		a.counter = NewMemoryCounter(WithCounterClock(a.now))
	}
	return a, nil
}

func defaultRealm(req *sip.Request, proxy bool) string {
	var h string
	if proxy {
		if f := req.From(); f != nil {
			h = f.Address.Host
		}
	} else if t := req.To(); t != nil {
		h = t.Address.Host
	}
	return strings.ToLower(h)
}

// Realm is the realm Verify expects for the request.
func (a *Authenticator) Realm(req *sip.Request, proxy bool) string { return a.realmOf(req, proxy) }

// Challenge returns one WWW-Authenticate header (Proxy-Authenticate when
// proxy) per configured algorithm, in order of preference, sharing a fresh
// nonce.
func (a *Authenticator) Challenge(realm string, stale, proxy bool) []sip.Header {
	return a.challenge(realm, stale, proxy, a.cfg.Algorithms)
}

func (a *Authenticator) challenge(realm string, stale, proxy bool, algs []Algorithm) []sip.Header {
	name := "WWW-Authenticate"
	if proxy {
		name = "Proxy-Authenticate"
	}
	// crypto/rand never fails (Go 1.24+), so issue cannot either.
	nonce, err := a.nonces.issue(a.now(), realm)
	if err != nil {
		panic(err)
	}
	out := make([]sip.Header, 0, len(algs))
	for _, alg := range algs {
		out = append(out, sip.NewHeader(name, challengeValue(realm, nonce, alg, stale)))
	}
	return out
}

// challengeError is the 401 (407 when proxy) carrying fresh challenges.
func (a *Authenticator) challengeError(realm string, stale, proxy bool, algs []Algorithm, cause error) error {
	hdrs := a.challenge(realm, stale, proxy, algs)
	if proxy {
		return sipstatus.ProxyAuthenticationRequired(hdrs, cause)
	}
	return sipstatus.Unauthorized(hdrs, cause)
}

// Verify checks the request's Authorization (Proxy-Authorization when proxy)
// credentials for the realm of the request and returns the authenticated
// user name. Errors are *sipstatus.Error values (see the package doc) whose
// cause is one of the Err* sentinels; a failure of Users or of the
// NonceCounter is returned wrapped, for a 500.
func (a *Authenticator) Verify(ctx context.Context, req *sip.Request, proxy bool) (string, error) {
	realm := a.realmOf(req, proxy)
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	var c *credentials
	var malformed error
	for h := range sipmsg.Headers(req, name) {
		scheme, cr, err := parseCredentials(h.Value())
		if !strings.EqualFold(scheme, "Digest") {
			continue // RFC 4475 §3.3.7: an unknown scheme is no credentials
		}
		if err != nil {
			malformed = err
			continue
		}
		if !strings.EqualFold(cr.get("realm"), realm) {
			continue
		}
		c = &cr
		break
	}
	if c == nil {
		if malformed != nil {
			return "", sipstatus.BadRequest("Bad "+name+" header field", fmt.Errorf("%w: %w", ErrMalformed, malformed))
		}
		return "", a.challengeError(realm, false, proxy, a.cfg.Algorithms, ErrNoCredentials)
	}
	bad := func(problem string) error {
		return sipstatus.BadRequest("Bad "+name+" header field: "+problem, fmt.Errorf("%w: %s", ErrMalformed, problem))
	}
	for _, p := range []string{"username", "nonce", "uri", "response"} {
		if c.get(p) == "" {
			return "", bad("missing " + p)
		}
	}
	alg, err := ParseAlgorithm(c.get("algorithm"))
	if err != nil || !a.offers(alg) {
		return "", a.challengeError(realm, false, proxy, a.cfg.Algorithms, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, c.get("algorithm")))
	}
	// We always offer qop="auth" (RFC 7616 §3.3 requires it to be used).
	if qop := c.get("qop"); !strings.EqualFold(qop, "auth") {
		return "", bad(`qop must be "auth"`)
	}
	ncStr, cnonce := c.get("nc"), c.get("cnonce")
	nc, err := strconv.ParseUint(ncStr, 16, 64)
	if err != nil || len(ncStr) != 8 || nc == 0 {
		return "", bad("nc must be 8 hex digits, not zero")
	}
	if cnonce == "" {
		return "", bad("missing cnonce")
	}
	response := strings.ToLower(c.get("response"))
	if len(response) != alg.hexLen() {
		return "", bad("response has the wrong length for " + string(alg))
	}
	if !sameURI(c.get("uri"), req.Recipient) {
		return "", sipstatus.BadRequest("Bad "+name+" header field: uri is not the Request-URI", ErrURIMismatch)
	}

	now := a.now()
	issued, ours, err := a.nonces.check(c.get("nonce"), realm)
	if err != nil || issued.After(now.Add(maxClockSkew)) {
		return "", a.challengeError(realm, false, proxy, a.cfg.Algorithms, ErrInvalidNonce)
	}

	user := c.get("username")
	cred, err := a.users.Lookup(ctx, user, realm)
	switch {
	case errors.Is(err, ErrUnknownUser):
		a.log.Info("digest: unknown user", "user", user, "realm", realm)
		return "", sipstatus.Forbidden(fmt.Errorf("%w: %s@%s", ErrUnknownUser, user, realm))
	case err != nil:
		return "", fmt.Errorf("digest: looking up %s@%s: %w", user, realm, err)
	}
	ha1, ok := cred.ha1(alg, user, realm)
	if !ok {
		algs := cred.algorithms(a.cfg.Algorithms)
		if len(algs) == 0 {
			return "", fmt.Errorf("digest: %s@%s has no usable credentials for %v", user, realm, a.cfg.Algorithms)
		}
		return "", a.challengeError(realm, false, proxy, algs, fmt.Errorf("%w: %s for %s@%s", ErrAlgorithmUnavailable, alg, user, realm))
	}
	want := Response(alg, ha1, c.get("nonce"), ncStr, cnonce, c.get("qop"), string(req.Method), c.get("uri"))
	if subtle.ConstantTimeCompare([]byte(want), []byte(response)) != 1 {
		a.log.Info("digest: wrong password", "user", user, "realm", realm)
		return "", sipstatus.Forbidden(fmt.Errorf("%w: %s@%s", ErrWrongPassword, user, realm))
	}
	// The password is proven from here on: ask for a new nonce without
	// bothering the user (stale=true, RFC 7616 §3.3).
	if now.Sub(issued) > a.cfg.NonceLifetime {
		return "", a.challengeError(realm, true, proxy, a.cfg.Algorithms, ErrStaleNonce)
	}
	if !ours {
		return "", a.challengeError(realm, true, proxy, a.cfg.Algorithms, ErrForeignNonce)
	}
	fresh, err := a.counter.Advance(ctx, c.get("nonce"), nc, issued.Add(a.cfg.NonceLifetime+maxClockSkew))
	if errors.Is(err, ErrNonceForgotten) {
		return "", a.challengeError(realm, true, proxy, a.cfg.Algorithms, fmt.Errorf("%w: %w", ErrStaleNonce, err))
	}
	if err != nil {
		return "", fmt.Errorf("digest: nonce counter: %w", err)
	}
	if !fresh {
		a.log.Info("digest: replayed nonce-count", "user", user, "realm", realm, "nc", ncStr)
		return "", a.challengeError(realm, true, proxy, a.cfg.Algorithms, fmt.Errorf("%w: nc %s", ErrReplay, ncStr))
	}
	return user, nil
}

func (a *Authenticator) offers(alg Algorithm) bool {
	for _, x := range a.cfg.Algorithms {
		if x == alg {
			return true
		}
	}
	return false
}

// sameURI compares the digest-uri with the Request-URI by scheme, user, host
// and port; a proxy on the way may have re-written the Request-URI's text
// without changing what it names.
func sameURI(digestURI string, ruri sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return digestURI == ruri.String()
	}
	if u.Raw() != "" || ruri.Raw() != "" {
		return strings.EqualFold(u.Scheme, ruri.Scheme) && u.Raw() == ruri.Raw()
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && u.User == ruri.User &&
		strings.EqualFold(u.Host, ruri.Host) && u.Port == ruri.Port
}
