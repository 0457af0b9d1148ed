package certs

import (
	"net/url"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"n1", true},
		{"a", true},
		{"edge-fra-01", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"N1", false},
		{"n1-", false},
		{"-n1", false},
		{"n.1", false},
		{"n 1", false},
		{"nö", false},
	} {
		err := ValidName("name", tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestValidDomain(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"example.test", true},
		{"sip.example.test", true},
		{"localhost", true},
		{"", false},
		{"example.test.", false},
		{".example.test", false},
		{"Example.test", false},
		{"ex_ample.test", false},
		{strings.Repeat("a.", 127) + "a", false},
	} {
		err := ValidDomain(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidDomain(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestIdentityOfMalformed(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	for _, tc := range []struct {
		name string
		uris []string
		want string
	}{
		{"no URI", nil, "carries no sipmesh identity"},
		{"other scheme", []string{"spiffe://example.test/node/n1"}, "carries no sipmesh identity"},
		{"unknown kind", []string{"sipmesh://example.test/admin/n1"}, "malformed sipmesh URI"},
		{"too deep", []string{"sipmesh://example.test/node/n1/x"}, "malformed sipmesh URI"},
		{"no name", []string{"sipmesh://example.test/node"}, "malformed sipmesh URI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var uris []*url.URL
			for _, u := range tc.uris {
				uris = append(uris, mustURL(t, u))
			}
			c := signRaw(t, ca, "x", uris)
			if id, err := IdentityOf(c); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("IdentityOf = %+v, %v; want error containing %q", id, err, tc.want)
			}
		})
	}
	// A sipmesh URI after another scheme's is still found; roles absent
	// means none.
	c := signRaw(t, ca, "x", []*url.URL{mustURL(t, "spiffe://x/y"), mustURL(t, "sipmesh://example.test/node/n9?dc=ams")})
	id, err := IdentityOf(c)
	if err != nil || id.Name != "n9" || id.Datacenter != "ams" || len(id.Roles) != 0 || id.Kind != KindNode {
		t.Fatalf("IdentityOf = %+v, %v", id, err)
	}
}
