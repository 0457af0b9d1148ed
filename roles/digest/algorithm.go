package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Algorithm is a digest algorithm token (RFC 7616 §6.1, RFC 8760 §2.2).
type Algorithm string

// The algorithms this package implements. The -sess variants are not offered.
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// ParseAlgorithm reads an algorithm token case-insensitively; an empty token
// is MD5 (RFC 2617 §3.2.1).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch {
	case s == "" || strings.EqualFold(s, string(MD5)):
		return MD5, nil
	case strings.EqualFold(s, string(SHA256)):
		return SHA256, nil
	}
	return "", fmt.Errorf("digest: unsupported algorithm %q", s)
}

// hexLen is the length of a hex digest of the algorithm.
func (a Algorithm) hexLen() int {
	if a == SHA256 {
		return 2 * sha256.Size
	}
	return 2 * md5.Size
}

// H returns the lower-case hex digest of the parts joined by ":". The
// parts are joined in a stack buffer and hashed with md5.Sum or
// sha256.Sum256: through hash.Hash, each part converted to bytes would be
// an allocation.
func (a Algorithm) H(parts ...string) string {
	var room [512]byte
	in := room[:0]
	for i, p := range parts {
		if i > 0 {
			in = append(in, ':')
		}
		in = append(in, p...)
	}
	if a == SHA256 {
		sum := sha256.Sum256(in)
		return hex.EncodeToString(sum[:])
	}
	sum := md5.Sum(in)
	return hex.EncodeToString(sum[:])
}

// HA1 is H(username ":" realm ":" password) (RFC 7616 §3.4.2).
func HA1(alg Algorithm, username, realm, password string) string {
	return alg.H(username, realm, password)
}

// Response computes the request-digest for qop=auth (RFC 7616 §3.4.1):
// H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri)).
// With qop empty it is the RFC 2069 form H(HA1 ":" nonce ":" HA2).
func Response(alg Algorithm, ha1, nonce, nc, cnonce, qop, method, uri string) string {
	ha2 := alg.H(method, uri)
	if qop == "" {
		return alg.H(ha1, nonce, ha2)
	}
	return alg.H(ha1, nonce, nc, cnonce, qop, ha2)
}
