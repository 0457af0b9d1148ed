package sipmsg

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// HasOptionTag reports whether a message lists the option tag in its
// header fields of that name (Supported, Require, Proxy-Require,
// Unsupported; RFC 3261 §20; option tags compare case-insensitively,
// §19.2). Roles ask it before using an extension: path (RFC 3327), gruu
// (RFC 5627), outbound (RFC 5626).
func HasOptionTag(m sip.Message, header, tag string) bool {
	for _, h := range m.GetHeaders(header) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}
