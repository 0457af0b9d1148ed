package sipmsg

import (
	"github.com/emiago/sipgo/sip"
)

// Taker is a stateless fast path that answers some datagrams itself, so
// that they pay for neither sipgo's parse nor its transactions.
type Taker interface {
	// Take sees each accepted message first, with the datagram it was
	// read from (valid during the call only); when it returns true the
	// message is its own and sipgo never reads it.
	Take(props sip.TransportReadProps, data []byte, msg sip.Message) bool
	// Wants reports whether a Plain datagram, which would go to sipgo
	// unread, must be parsed and shown to Take. It looks at the raw
	// octets, so it must be cheap, and a datagram it wants that Take
	// then declines is parsed twice.
	Wants(props sip.TransportReadProps, data []byte) bool
}

// Rejection is a datagram that Parse refused.
type Rejection struct {
	Props sip.TransportReadProps
	// Message is what could be read: a *sip.Request when a response is due
	// (see sipstatus.Response), possibly nil when the datagram is dropped.
	Message sip.Message
	// Err is the *sipstatus.Error from Parse.
	Err error
}

// DatagramFilter returns a read filter for sipgo's transport layer
// (sip.WithTransportLayerReadFilter) that puts Parse in front of sipgo's
// parser on message-oriented transports (udp, ws, wss): an accepted datagram
// is replaced by sipgo's serialization of what Parse read, so sipgo reads the
// fields right; a rejected one never reaches sipgo and is handed to reject,
// which sends the response (from the listening socket, to Props.RemoteAddr)
// when one is due. Stream transports (tcp, tls) pass through unchanged:
// sipgo frames them, and handlers there call Validate. So do Plain
// datagrams, which sipgo reads exactly as Parse would: the handler must
// call Validate on every request, whatever its transport.
//
// take, when not nil, is a stateless fast path in front of sipgo (see
// Taker).
//
// Note that sipgo upper-cases the method when it re-reads the message
// (RFC 3261 methods are case-sensitive); everything else survives.
func (v *Validator) DatagramFilter(reject func(Rejection), take Taker) sip.TransportReadFilter {
	return func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		switch Transport(props.Transport) {
		case "udp", "ws", "wss":
		default:
			return data, nil
		}
		if v.Plain(data) && (take == nil || !take.Wants(props, data)) {
			return data, nil
		}
		msg, err := v.Parse(data)
		if err != nil {
			if reject != nil {
				reject(Rejection{Props: props, Message: msg, Err: err})
			}
			return nil, nil
		}
		if take != nil && take.Take(props, data, msg) {
			return nil, nil
		}
		return []byte(msg.String()), nil
	}
}
