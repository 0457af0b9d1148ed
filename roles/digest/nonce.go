package digest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"
)

const (
	nonceTimeLen   = 8
	nonceIssuerLen = 8
	nonceRandLen   = 12
	nonceMACLen    = sha256.Size
	nonceSigned    = nonceTimeLen + nonceIssuerLen + nonceRandLen
	nonceLen       = nonceSigned + nonceMACLen
	// maxClockSkew tolerates nodes whose clocks run ahead of ours.
	maxClockSkew = 30 * time.Second
)

var nonceEncoding = base64.RawURLEncoding

// nonces issues and checks stateless nonces bound to a realm and to the
// node that issued them:
// base64url(timestamp | issuer | random | HMAC-SHA256(key, timestamp | issuer | random | realm)),
// issuer being the first octets of SHA-256 of the node's name. Any node
// with the same cluster secret can check a nonce another issued, and tell
// that it did not issue it.
type nonces struct {
	key    []byte
	issuer [nonceIssuerLen]byte
	rand   io.Reader
	// macs holds HMAC states keyed with key: hmac.New hashes the key
	// and allocates both inner and outer hashes, on every REGISTER twice.
	macs sync.Pool
}

// newNonces derives the nonce key from the cluster secret so the secret is
// never used directly for anything else.
func newNonces(secret []byte, issuer string, rand io.Reader) *nonces {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("sipmesh digest nonce v2"))
	n := &nonces{key: m.Sum(nil), rand: rand}
	if issuer != "" {
		h := sha256.Sum256([]byte(issuer))
		copy(n.issuer[:], h[:])
	}
	return n
}

// mac appends the MAC of the signed part of b and realm to dst.
func (n *nonces) mac(dst, b []byte, realm string) []byte {
	m, _ := n.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, n.key)
	}
	m.Reset()
	m.Write(b[:nonceSigned])
	io.WriteString(m, realm)
	dst = m.Sum(dst)
	n.macs.Put(m)
	return dst
}

func (n *nonces) issue(now time.Time, realm string) (string, error) {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(now.Unix()))
	copy(b[nonceTimeLen:], n.issuer[:])
	if _, err := io.ReadFull(n.rand, b[nonceTimeLen+nonceIssuerLen:nonceSigned]); err != nil {
		return "", fmt.Errorf("digest: nonce randomness: %w", err)
	}
	n.mac(b[:nonceSigned], b, realm)
	return nonceEncoding.EncodeToString(b), nil
}

var errNonceForged = errors.New("digest: nonce was not issued by this cluster for this realm")

// check verifies the MAC and returns the time the nonce was issued and
// whether this node issued it.
func (n *nonces) check(nonce, realm string) (issued time.Time, ours bool, err error) {
	b, err := nonceEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return time.Time{}, false, errNonceForged
	}
	var sum [nonceMACLen]byte
	if !hmac.Equal(b[nonceSigned:], n.mac(sum[:0], b, realm)) {
		return time.Time{}, false, errNonceForged
	}
	ours = [nonceIssuerLen]byte(b[nonceTimeLen:nonceTimeLen+nonceIssuerLen]) == n.issuer
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), ours, nil
}
