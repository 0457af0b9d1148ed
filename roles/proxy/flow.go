package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
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
type flowKeys struct{ key []byte }

const flowPrefix = "ft-"

func (k *flowKeys) mac(payload string) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:9])
}

// token is the URI user part naming f.
func (k *flowKeys) token(f flow) string {
	payload := f.transport + "|" + f.remote
	return flowPrefix + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + k.mac(payload)
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
	payload := string(raw)
	if !hmac.Equal([]byte(sig), []byte(k.mac(payload))) {
		return flow{}, false
	}
	tr, remote, ok := strings.Cut(payload, "|")
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
