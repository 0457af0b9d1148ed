package sipmsg

import "strings"

// HasOptionTag reports whether a message lists the option tag in its
// header fields of that name (Supported, Require, Proxy-Require,
// Unsupported; RFC 3261 §20; option tags compare case-insensitively,
// §19.2). Roles ask it before using an extension: path (RFC 3327), gruu
// (RFC 5627), outbound (RFC 5626).
func HasOptionTag(m Fields, header, tag string) bool {
	for h := range Headers(m, header) {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}
