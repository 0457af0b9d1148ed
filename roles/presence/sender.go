package presence

import (
	"context"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Sender sends a request within a dialog and returns its final response.
// The request has its Request-URI, Route set, From, To, Call-ID, CSeq,
// Max-Forwards and Contact; the Sender adds the Via and sends to the first
// Route (or the Request-URI), over the transport its transport parameter
// names (RFC 3263 §4.1 default UDP). The edge implements it with the
// sipgo client of its user agent so that NOTIFYs leave from the node's
// SIP address.
type Sender interface {
	Send(ctx context.Context, req *sip.Request) (*sip.Response, error)
}

// ClientSender is a Sender over a sipgo client.
type ClientSender struct {
	Client *sipgo.Client
}

// Send implements Sender.
func (c ClientSender) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return c.Client.Do(ctx, req)
}
