package registrar

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// GRUUs (RFC 5627). A REGISTER that says "Supported: gruu" gets, for each
// binding with a +sip.instance, a public and a temporary GRUU in its 200
// (§5.1), and any node of the mesh resolves either back to the instance's
// bindings with nothing stored beyond the bindings themselves:
//
//   - pub-gruu: the AOR with gr set to the instance ID without its angle
//     brackets, "sip:alice@example.test;gr=urn:uuid:…": the same at every
//     registration of the instance, and readable by anyone (§3.1);
//   - temp-gruu: "sip:tgruu.TOKEN@example.test;gr", TOKEN the AES-GCM
//     sealing, under a key every node derives from the cluster secret, of
//     the AOR's user and 8-byte hashes of the instance ID and of the
//     REGISTER's Call-ID, with a random nonce: every REGISTER gets a new
//     one, none reveals the AOR (§3.2), and one is valid while a binding of
//     its instance carries its Call-ID. A REGISTER of the instance with a
//     new Call-ID replaces that binding, which invalidates the temp-gruus of
//     the old Call-ID (§5.1) without a list of issued GRUUs.

// ErrInvalidGRUU is the cause of the 404 for a GRUU this domain did not
// issue, or a temp-gruu of a registration that was replaced (RFC 5627 §5.3).
var ErrInvalidGRUU = errors.New("registrar: not a valid GRUU of this domain")

const tempGRUUUser = "tgruu."

// IsGRUU reports whether u is a GRUU: it carries the gr parameter (RFC 5627
// §3.1, whatever its value).
func IsGRUU(u sip.Uri) bool {
	_, ok := u.UriParams.Get("gr")
	return ok
}

// instanceURN is the instance ID without the angle brackets of its
// +sip.instance form ("<urn:uuid:…>", RFC 5626 §4.1).
func instanceURN(instance string) string {
	if strings.HasPrefix(instance, "<") && strings.HasSuffix(instance, ">") {
		return instance[1 : len(instance)-1]
	}
	return instance
}

// PubGRUU is the public GRUU of instance at aor ("user@domain").
func PubGRUU(aor, instance string) string {
	return "sip:" + aor + ";gr=" + sipmsg.EscapeParam(instanceURN(instance))
}

// tempGRUUs seals and opens temp-gruu tokens.
type tempGRUUs struct {
	aead   cipher.AEAD
	domain string
}

func newTempGRUUs(secret []byte, domain string) (*tempGRUUs, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("registrar: the GRUU secret must be at least 16 bytes, got %d", len(secret))
	}
	// Its own key, so that the cluster secret serves nothing else directly.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("sipmesh temp-gruu v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("registrar: temp-gruu key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("registrar: temp-gruu key: %w", err)
	}
	return &tempGRUUs{aead: aead, domain: domain}, nil
}

const gruuHashLen = 8

func gruuHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:gruuHashLen]
}

var tokenEncoding = base64.RawURLEncoding

// mint returns a new temp-gruu of the instance registered by user with
// callID.
func (k *tempGRUUs) mint(user, instance, callID string) string {
	plain := make([]byte, 0, 2*gruuHashLen+len(user))
	plain = append(plain, gruuHash(instance)...)
	plain = append(plain, gruuHash(callID)...)
	plain = append(plain, user...)
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	rand.Read(nonce)
	sealed := k.aead.Seal(nonce, nonce, plain, []byte(k.domain))
	return "sip:" + tempGRUUUser + tokenEncoding.EncodeToString(sealed) + "@" + k.domain + ";gr"
}

// open reads the user part of a temp-gruu this cluster issued.
func (k *tempGRUUs) open(uriUser string) (user string, instance, callID []byte, ok bool) {
	tok, found := strings.CutPrefix(uriUser, tempGRUUUser)
	if !found {
		return "", nil, nil, false
	}
	sealed, err := tokenEncoding.DecodeString(tok)
	if err != nil || len(sealed) < k.aead.NonceSize()+k.aead.Overhead()+2*gruuHashLen {
		return "", nil, nil, false
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], []byte(k.domain))
	if err != nil || len(plain) <= 2*gruuHashLen {
		return "", nil, nil, false
	}
	return string(plain[2*gruuHashLen:]), plain[:gruuHashLen], plain[gruuHashLen : 2*gruuHashLen], true
}

// gruuParams adds pub-gruu and temp-gruu to the 200's Contact of binding b
// (RFC 5627 §5.1: quoted URIs).
func (r *Registrar) gruuParams(v *strings.Builder, b Binding) {
	user, _, _ := strings.Cut(b.AOR, "@")
	v.WriteString(`;pub-gruu="` + PubGRUU(b.AOR, b.Instance) + `";temp-gruu="` + r.temp.mint(user, b.Instance, b.CallID) + `"`)
}

// LookupGRUU resolves a GRUU of this domain (RFC 5627 §5.3): it returns the
// AOR and the live bindings of the instance the GRUU names, all of them
// (one per flow, RFC 5626). A GRUU this domain did not issue, or a temp-gruu
// whose registration was replaced with another Call-ID, is a 404
// (*sipstatus.Error wrapping ErrInvalidGRUU). A valid GRUU whose instance
// has no binding now returns no bindings and no error: the caller answers
// 480, or 404 when the user does not exist.
func (r *Registrar) LookupGRUU(ctx context.Context, u sip.Uri) (string, []Binding, error) {
	gr, ok := u.UriParams.Get("gr")
	if !ok || !strings.EqualFold(u.Host, r.domain) || u.User == "" {
		return "", nil, sipstatus.NotFound(fmt.Errorf("%w: %s", ErrInvalidGRUU, u.String()))
	}
	if gr != "" {
		aor := AOR(u)
		urn := sipmsg.Unescape(gr)
		bs, err := r.Lookup(ctx, aor)
		if err != nil {
			return "", nil, err
		}
		var out []Binding
		for _, b := range bs {
			if b.Instance != "" && instanceURN(b.Instance) == urn {
				out = append(out, b)
			}
		}
		return aor, out, nil
	}
	if r.temp == nil {
		return "", nil, sipstatus.NotFound(fmt.Errorf("%w: temp-gruus are not issued here", ErrInvalidGRUU))
	}
	user, inst, call, ok := r.temp.open(u.User)
	if !ok {
		return "", nil, sipstatus.NotFound(fmt.Errorf("%w: %s was not issued by this cluster", ErrInvalidGRUU, u.String()))
	}
	aor := user + "@" + r.domain
	bs, err := r.Lookup(ctx, aor)
	if err != nil {
		return "", nil, err
	}
	var out []Binding
	current := false
	for _, b := range bs {
		if b.Instance == "" || !hmac.Equal(gruuHash(b.Instance), inst) {
			continue
		}
		out = append(out, b)
		current = current || hmac.Equal(gruuHash(b.CallID), call)
	}
	if len(out) > 0 && !current {
		return "", nil, sipstatus.NotFound(fmt.Errorf("%w: the temp-gruu's registration of %s was replaced by one with another Call-ID (RFC 5627 §5.1)", ErrInvalidGRUU, aor))
	}
	return aor, out, nil
}
