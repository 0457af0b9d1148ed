package presence

import (
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Causes of the agent's error responses, reachable with errors.Is under
// the *sipstatus.Error that says the response.
var (
	ErrBadEvent         = errors.New("presence: event package not supported (only presence)")
	ErrUnknownETag      = errors.New("presence: no publication with that entity-tag")
	ErrUnsupportedMedia = errors.New("presence: body is not application/pidf+xml")
	ErrNoBody           = errors.New("presence: initial PUBLISH without a body")
	ErrNotAcceptable    = errors.New("presence: watcher does not accept application/pidf+xml")
	ErrNoSubscription   = errors.New("presence: no such subscription")
	ErrOutOfOrder       = errors.New("presence: CSeq lower than the dialog's last")
	ErrForbidden        = errors.New("presence: watcher not authorized")
	ErrBadRequest       = errors.New("presence: malformed request")
	ErrMethod           = errors.New("presence: method not handled by the presence agent")
)

// badEvent is 489 Bad Event with Allow-Events (RFC 6665 §4.2.1.1).
func badEvent(cause error) error {
	return sipstatus.New(489, "", cause, sip.NewHeader("Allow-Events", EventPresence))
}

// unsupportedMedia is 415 with Accept (RFC 3261 §21.4.13).
func unsupportedMedia(cause error) error {
	return sipstatus.New(415, "", cause, sip.NewHeader("Accept", ContentTypePIDF))
}

func conditionFailed(cause error) error { return sipstatus.New(412, "", cause) }

func badRequest(reason string, cause error) error { return sipstatus.BadRequest(reason, cause) }
