package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strings"
	"sync"
)

// flow is a connection or NAT binding a message came over: the transport
// (lower case) and the remote address.
type flow struct {
	transport string
	remote    string
}

func (f flow) String() string { return f.transport + ":" + f.remote }

// flowKeys signs flow tokens (RFC 5626 §5.2: the edge proxy must be able
// to tell its own tokens from forged ones).
type flowKeys struct {
	key []byte
	// macs holds HMACs keyed with key, reset between uses: a new one is
	// two SHA-256 states, made for every REGISTER's Path otherwise.
	macs sync.Pool
}

const flowPrefix = "ft-"

// appendMAC appends the base64 of payload's truncated HMAC to dst.
func (k *flowKeys) appendMAC(dst, payload []byte) []byte {
	m, _ := k.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, k.key)
	}
	m.Reset()
	m.Write(payload)
	var sum [sha256.Size]byte
	dst = base64.RawURLEncoding.AppendEncode(dst, m.Sum(sum[:0])[:9])
	k.macs.Put(m)
	return dst
}

// token is the URI user part naming f.
func (k *flowKeys) token(f flow) string {
	var room [256]byte
	payload := append(append(append(room[:0:96], f.transport...), '|'), f.remote...)
	out := append(room[96:96], flowPrefix...)
	out = base64.RawURLEncoding.AppendEncode(out, payload)
	out = append(out, '.')
	return string(k.appendMAC(out, payload))
}

// parse reads a token this process issued.
func (k *flowKeys) parse(user string) (flow, bool) {
	rest, ok := strings.CutPrefix(user, flowPrefix)
	if !ok {
		return flow{}, false
	}
	enc, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return flow{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return flow{}, false
	}
	var room [64]byte
	if !hmac.Equal([]byte(sig), k.appendMAC(room[:0], raw)) {
		return flow{}, false
	}
	tr, remote, ok := strings.Cut(string(raw), "|")
	if !ok {
		return flow{}, false
	}
	return flow{transport: tr, remote: remote}, true
}

// peekToken reads the flow named by a token of any node of the mesh
// without checking its signature: to describe where a party's SIP comes
// from (Media.Wanted), never to route.
func peekToken(user string) (flow, bool) {
	rest, ok := strings.CutPrefix(user, flowPrefix)
	if !ok {
		return flow{}, false
	}
	enc, _, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return flow{}, false
	}
	tr, remote, ok := strings.Cut(string(raw), "|")
	if !ok {
		return flow{}, false
	}
	return flow{transport: tr, remote: remote}, true
}
