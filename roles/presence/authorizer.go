package presence

import (
	"context"
	"strings"
)

// Decision is an Authorizer's answer for a watcher (RFC 3856 §6.6).
type Decision int

const (
	// Deny refuses the subscription: 403 Forbidden, or on a refresh a
	// NOTIFY "terminated;reason=rejected".
	Deny Decision = iota
	// Allow accepts it: 200 OK and NOTIFYs with the presentity's state.
	Allow
	// Pending accepts it without disclosing anything yet: 202 Accepted
	// and NOTIFYs "pending" without a body. The decision is asked again on
	// every refresh, so a rule that changes to Allow takes effect then.
	Pending
)

// Authorizer decides whether watcher (an AOR "user@domain") may see the
// presence of presentity ("user@domain"). It is asked on every initial
// SUBSCRIBE and every refresh. An error is answered as it maps through
// roles/sipstatus (500 when it carries no status), so an Authorizer may
// return, say, sipstatus.NotFound for an unknown presentity.
type Authorizer interface {
	Authorize(ctx context.Context, watcher, presentity string) (Decision, error)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ctx context.Context, watcher, presentity string) (Decision, error)

// Authorize calls f.
func (f AuthorizerFunc) Authorize(ctx context.Context, watcher, presentity string) (Decision, error) {
	return f(ctx, watcher, presentity)
}

// SameDomain is the default Authorizer: watchers of the presentity's own
// domain are allowed, others denied.
var SameDomain Authorizer = AuthorizerFunc(func(_ context.Context, watcher, presentity string) (Decision, error) {
	if strings.EqualFold(domainOf(watcher), domainOf(presentity)) && domainOf(presentity) != "" {
		return Allow, nil
	}
	return Deny, nil
})

func domainOf(aor string) string {
	_, d, _ := strings.Cut(aor, "@")
	return d
}
