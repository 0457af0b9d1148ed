package sipmsg

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Supported reports whether the request lists the option tag in a
// Supported header field (RFC 3261 §20.37; option tags compare
// case-insensitively, §19.2). Roles ask it before using an extension the
// UA must understand: path (RFC 3327), gruu (RFC 5627), outbound (RFC 5626).
func Supported(req *sip.Request, tag string) bool {
	for _, h := range req.GetHeaders("Supported") {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}
