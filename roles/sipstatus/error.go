package sipstatus

import (
	"context"
	"errors"

	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Error is an error that says which final response it should produce.
//
// Code 0 means "no response": the message is to be discarded silently (see
// [Drop]). Reason is the reason phrase to send; when empty the registered
// phrase of Code is used. Headers are added to the response (for example
// WWW-Authenticate for 401, Min-Expires for 423, Unsupported for 420). Err is
// the cause; it is logged, never sent.
type Error struct {
	Code    int
	Reason  string
	Headers []sip.Header
	Err     error
}

// New returns an error that produces a response with the given code and reason
// phrase ("" selects the registered phrase) carrying the given header fields.
func New(code int, reason string, cause error, hdrs ...sip.Header) *Error {
	return &Error{Code: code, Reason: reason, Headers: hdrs, Err: cause}
}

// Drop returns an error after which no response must be sent: the message
// cannot be answered (it is a response or an ACK, its start line or topmost
// Via cannot be read) or answering would be harmful.
func Drop(cause error) *Error {
	return &Error{Code: 0, Err: cause}
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Code == 0 {
		b.WriteString("dropped")
	} else {
		b.WriteString(strconv.Itoa(e.Code))
		b.WriteByte(' ')
		b.WriteString(e.reason())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Dropped reports whether the error asks for no response at all.
func (e *Error) Dropped() bool { return e.Code == 0 }

func (e *Error) reason() string {
	if e.Reason != "" {
		return e.Reason
	}
	return ReasonPhrase(e.Code)
}

// Status is the response an error maps to.
type Status struct {
	// Code is the status code; 0 means that no response is sent.
	Code    int
	Reason  string
	Headers []sip.Header
}

// Drop reports whether no response is to be sent.
func (s Status) Drop() bool { return s.Code == 0 }

// Of maps an error to the response it produces. This is the only mapping
// between errors and SIP status codes in sipmesh:
//
//   - nil: 200 OK;
//   - an *Error anywhere in the chain: its code, reason and header fields
//     (the outermost one wins);
//   - context.DeadlineExceeded: 504 Server Time-out (RFC 3261 §21.5.5: a
//     server this node depends on did not answer in time);
//   - context.Canceled: 503 Service Unavailable;
//   - anything else: 500 Server Internal Error.
func Of(err error) Status {
	if err == nil {
		return Status{Code: 200, Reason: ReasonPhrase(200)}
	}
	var se *Error
	if errors.As(err, &se) {
		return Status{Code: se.Code, Reason: se.reason(), Headers: se.Headers}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return Status{Code: 504, Reason: ReasonPhrase(504)}
	case errors.Is(err, context.Canceled):
		return Status{Code: 503, Reason: ReasonPhrase(503)}
	}
	return Status{Code: 500, Reason: ReasonPhrase(500)}
}

// Response builds the response that err asks for, following RFC 3261 §8.2.6
// (Via, From, To, Call-ID and CSeq copied, a To tag added). It returns nil
// when no response must be sent: err says so, req is nil, or req is an ACK
// (RFC 3261 §17.1.1.3: an ACK is never answered).
func Response(req *sip.Request, err error) *sip.Response {
	if req == nil || req.IsAck() {
		return nil
	}
	st := Of(err)
	if st.Drop() {
		return nil
	}
	res := NewResponse(req, st.Code, st.Reason)
	for _, h := range st.Headers {
		res.AppendHeader(sip.HeaderClone(h))
	}
	return res
}

// BadRequest is 400 Bad Request with a reason phrase naming the defect, for
// example "Bad CSeq" or "Missing Call-ID" (RFC 3261 §21.4.1: "the reason
// phrase SHOULD identify the syntax problem in more detail").
func BadRequest(reason string, cause error) *Error {
	return New(400, reason, cause)
}

// Unauthorized is 401 with one WWW-Authenticate header per challenge.
func Unauthorized(challenges []sip.Header, cause error) *Error {
	return New(401, "", cause, challenges...)
}

// ProxyAuthenticationRequired is 407 with one Proxy-Authenticate header per
// challenge.
func ProxyAuthenticationRequired(challenges []sip.Header, cause error) *Error {
	return New(407, "", cause, challenges...)
}

// Forbidden is 403 Forbidden.
func Forbidden(cause error) *Error { return New(403, "", cause) }

// NotFound is 404 Not Found.
func NotFound(cause error) *Error { return New(404, "", cause) }

// UnsupportedURIScheme is 416 (RFC 3261 §8.2.2.1, §16.3 step 2).
func UnsupportedURIScheme(cause error) *Error { return New(416, "", cause) }

// BadExtension is 420 with an Unsupported header listing the option tags that
// are not understood (RFC 3261 §8.2.2.3, §16.3 step 5).
func BadExtension(unsupported []string, cause error) *Error {
	return New(420, "", cause, sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
}

// IntervalTooBrief is 423 with the Min-Expires header (RFC 3261 §10.3 step 7).
func IntervalTooBrief(minExpires time.Duration, cause error) *Error {
	return New(423, "", cause, sip.NewHeader("Min-Expires", strconv.FormatInt(seconds(minExpires), 10)))
}

// FlowFailed is 430 (RFC 5626 §5.3, §11.5): an edge proxy was asked to send
// a request over a flow of its own that no longer exists. The authoritative
// proxy tries another flow of the same instance; endpoints never see it.
func FlowFailed(cause error) *Error { return New(430, "", cause) }

// FirstHopLacksOutbound is 439 (RFC 5626 §6, §11.6): a REGISTER asked for
// outbound, but the first hop's Path entry does not say "ob".
func FirstHopLacksOutbound(cause error) *Error { return New(439, "", cause) }

// TemporarilyUnavailable is 480: the callee exists but has no usable
// binding now (RFC 3261 §21.4.18).
func TemporarilyUnavailable(cause error) *Error { return New(480, "", cause) }

// TooManyHops is 483 (RFC 3261 §16.3 step 3).
func TooManyHops(cause error) *Error { return New(483, "", cause) }

// ServerInternal is 500 Server Internal Error.
func ServerInternal(cause error) *Error { return New(500, "", cause) }

// ServiceUnavailable is 503, with Retry-After when retryAfter is positive
// (RFC 3261 §21.5.4, §20.33).
func ServiceUnavailable(retryAfter time.Duration, cause error) *Error {
	if retryAfter <= 0 {
		return New(503, "", cause)
	}
	return New(503, "", cause, sip.NewHeader("Retry-After", strconv.FormatInt(seconds(retryAfter), 10)))
}

// VersionNotSupported is 505 (RFC 3261 §8.2 and §21.5.6).
func VersionNotSupported(cause error) *Error { return New(505, "", cause) }

// MessageTooLarge is 513 (RFC 3261 §21.5.7).
func MessageTooLarge(cause error) *Error { return New(513, "", cause) }

// seconds rounds a duration up to whole seconds, as SIP delta-seconds.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
