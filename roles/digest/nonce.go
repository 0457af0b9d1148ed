package digest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

const (
	nonceTimeLen = 8
	nonceRandLen = 12
	nonceMACLen  = sha256.Size
	nonceLen     = nonceTimeLen + nonceRandLen + nonceMACLen
	// maxClockSkew tolerates nodes whose clocks run ahead of ours.
	maxClockSkew = 30 * time.Second
)

var nonceEncoding = base64.RawURLEncoding

// nonces issues and checks stateless nonces bound to a realm:
// base64url(timestamp | random | HMAC-SHA256(key, timestamp | random | realm)).
// Any node with the same cluster secret can check a nonce another issued.
type nonces struct {
	key  []byte
	rand io.Reader
}

// newNonces derives the nonce key from the cluster secret so the secret is
// never used directly for anything else.
func newNonces(secret []byte, rand io.Reader) *nonces {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("sipmesh digest nonce v1"))
	return &nonces{key: m.Sum(nil), rand: rand}
}

func (n *nonces) mac(b []byte, realm string) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(b[:nonceTimeLen+nonceRandLen])
	m.Write([]byte(realm))
	return m.Sum(nil)
}

func (n *nonces) issue(now time.Time, realm string) (string, error) {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(now.Unix()))
	if _, err := io.ReadFull(n.rand, b[nonceTimeLen:nonceTimeLen+nonceRandLen]); err != nil {
		return "", fmt.Errorf("digest: nonce randomness: %w", err)
	}
	copy(b[nonceTimeLen+nonceRandLen:], n.mac(b, realm))
	return nonceEncoding.EncodeToString(b), nil
}

var errNonceForged = errors.New("digest: nonce was not issued by this cluster for this realm")

// check verifies the MAC and returns the time the nonce was issued.
func (n *nonces) check(nonce, realm string) (time.Time, error) {
	b, err := nonceEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return time.Time{}, errNonceForged
	}
	if !hmac.Equal(b[nonceTimeLen+nonceRandLen:], n.mac(b, realm)) {
		return time.Time{}, errNonceForged
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b)), 0), nil
}
