package dnsprov

import (
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/miekg/dns"
)

// tsigAlgorithms maps configuration names to TSIG algorithm names (RFC 8945 §6).
func tsigAlgorithm(name string) (string, bool) {
	switch strings.TrimSuffix(strings.ToLower(name), ".") {
	case "hmac-sha256":
		return dns.HmacSHA256, true
	case "hmac-sha384":
		return dns.HmacSHA384, true
	case "hmac-sha512":
		return dns.HmacSHA512, true
	case "hmac-sha224":
		return dns.HmacSHA224, true
	case "hmac-sha1":
		return dns.HmacSHA1, true
	}
	return "", false
}

var keyBlockRE = regexp.MustCompile(`(?s)key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;`)
var keyFieldRE = regexp.MustCompile(`(?s)(algorithm|secret)\s+"?([^";\s]+)"?\s*;`)

// loadKey reads the TSIG key of c: the Secret field, or KeyFile holding a
// bare base64 secret or BIND key blocks (the one named KeyName, or the only
// one).
func loadKey(c RFC2136Config) (*tsigKey, error) {
	name, algName, secret := c.KeyName, c.Algorithm, c.Secret
	if secret == "" {
		if c.KeyFile == "" {
			return nil, fmt.Errorf("dnsprov: dns.rfc2136 has no key_file: give the TSIG key the server grants updates to")
		}
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dnsprov: read dns.rfc2136 key_file: %w", err)
		}
		n, a, s, err := parseKeyFile(string(b), name)
		if err != nil {
			return nil, fmt.Errorf("dnsprov: key_file %s: %w", c.KeyFile, err)
		}
		if name == "" {
			name = n
		}
		if a != "" {
			if algName != "" && !strings.EqualFold(strings.TrimSuffix(algName, "."), a) {
				return nil, fmt.Errorf("dnsprov: key_file %s says algorithm %s but dns.rfc2136.algorithm is %s: make them agree", c.KeyFile, a, algName)
			}
			algName = a
		}
		secret = s
	}
	if name == "" {
		return nil, fmt.Errorf("dnsprov: dns.rfc2136 has no key_name and the key file does not name the key")
	}
	if algName == "" {
		algName = "hmac-sha256"
	}
	alg, ok := tsigAlgorithm(algName)
	if !ok {
		return nil, fmt.Errorf("dnsprov: TSIG algorithm %q is not supported: use hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224 or hmac-sha1", algName)
	}
	if _, err := base64.StdEncoding.DecodeString(secret); err != nil || secret == "" {
		return nil, fmt.Errorf("dnsprov: TSIG secret of key %q is not base64: %v", name, err)
	}
	return &tsigKey{name: dns.Fqdn(strings.ToLower(name)), alg: alg, secret: secret}, nil
}

// parseKeyFile returns the key named want (or the only key) of a BIND key
// file, or the bare secret the file holds.
func parseKeyFile(text, want string) (name, alg, secret string, err error) {
	blocks := keyBlockRE.FindAllStringSubmatch(text, -1)
	if len(blocks) == 0 {
		s := strings.Join(strings.Fields(text), "")
		if strings.ContainsAny(s, "{};\"") {
			return "", "", "", fmt.Errorf("neither a base64 secret nor a BIND key block")
		}
		return "", "", s, nil
	}
	var names []string
	for _, b := range blocks {
		n := b[1]
		names = append(names, n)
		if want != "" && !strings.EqualFold(strings.TrimSuffix(n, "."), strings.TrimSuffix(want, ".")) {
			continue
		}
		if want == "" && len(blocks) > 1 {
			continue
		}
		for _, f := range keyFieldRE.FindAllStringSubmatch(b[2], -1) {
			switch f[1] {
			case "algorithm":
				alg = f[2]
			case "secret":
				secret = f[2]
			}
		}
		if secret == "" {
			return "", "", "", fmt.Errorf("key %q has no secret", n)
		}
		return n, alg, secret, nil
	}
	if want == "" {
		return "", "", "", fmt.Errorf("it holds keys %v: set dns.rfc2136.key_name to choose one", names)
	}
	return "", "", "", fmt.Errorf("no key %q in it (it holds %v)", want, names)
}
