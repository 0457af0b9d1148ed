package digest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseUsers(t *testing.T) {
	md5 := HA1(MD5, "bob", "example.test", "pw")
	sha := HA1(SHA256, "bob", "example.test", "pw")
	data := []byte(`
users:
  - {user: alice, domain: Example.TEST, password: s3cret}
  - user: bob
    domain: example.test
    ha1: ` + md5 + `
    ha1_sha256: ` + strings.ToUpper(sha) + `
`)
	u, err := ParseUsers(data, "users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 2 {
		t.Fatalf("Len %d", u.Len())
	}
	ctx := context.Background()
	c, err := u.Lookup(ctx, "alice", "example.test")
	if err != nil || c.Password != "s3cret" {
		t.Fatalf("alice: %+v %v", c, err)
	}
	c, err = u.Lookup(ctx, "bob", "EXAMPLE.test")
	if err != nil || c.HA1[MD5] != md5 || c.HA1[SHA256] != sha {
		t.Fatalf("bob: %+v %v", c, err)
	}
	if _, err := u.Lookup(ctx, "Alice", "example.test"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("user part is case-sensitive: %v", err)
	}
	if u, err := ParseUsers([]byte(""), "empty.yaml"); err != nil || u.Len() != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

func TestParseUsersErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"users: [{user: a, domain: d.test, pasword: x}]", `users[0]: unknown key "pasword"`},
		{"users: [{user: a, domain: d.test, password: x}, {domain: d.test, password: yy}]", "users[1].user: missing"},
		{"users: [{user: a, password: x}]", "users[0].domain: missing"},
		{"users: [{user: a, domain: d.test}]", "users[0]: missing password"},
		{"users: [{user: a, domain: d.test, password: 1234}]", "users[0].password: must be a string"},
		{"users: [{user: a, domain: d.test, password: y}]", "users[0].password: must be a string"}, // YAML 1.1 boolean
		{"users: [{user: a, domain: d.test, ha1: abc}]", "users[0].ha1: must be 32 hex digits"},
		{"users: [{user: a, domain: d.test, ha1_sha256: " + strings.Repeat("g", 64) + "}]", "users[0].ha1_sha256: must be 64 hex digits"},
		{"users: [{user: a, domain: d.test, password: x, ha1: " + strings.Repeat("0a", 16) + "}]", "users[0]: give either password or ha1"},
		{"users: [{user: a, domain: d.test, password: x}, {user: a, domain: D.test, password: yy}]", "users[1]: a@d.test is already defined by users[0]"},
		{"users: [{user: 'a b', domain: d.test, password: x}]", "users[0].user"},
		{"users: [{user: a, domain: 'd test', password: x}]", "users[0].domain"},
		{"user: [{user: a}]", `unknown key "user" at the top level`},
		{"users: {user: a}", "users must be a list"},
		{"users: [a]", "users[0]: must be a mapping"},
		{"users:\n  - {user: a, user: b}", "not valid YAML"},
	} {
		_, err := ParseUsers([]byte(tc.yaml), "users.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "users.yaml") {
			t.Errorf("%s:\n  got  %v\n  want ...%s...", tc.yaml, err, tc.want)
		}
	}
}

func TestFileUsersReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("users: [{user: alice, domain: example.test, password: one}]")
	f, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lookup := func() string {
		c, err := f.Lookup(ctx, "alice", "example.test")
		if err != nil {
			return "error"
		}
		return c.Password
	}
	if lookup() != "one" {
		t.Fatal("initial load")
	}
	if changed, err := f.Reload(); changed || err != nil {
		t.Fatalf("unchanged file reloaded: %v %v", changed, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		f.Watch(wctx, 10*time.Millisecond)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for lookup() != want {
			if time.Now().After(deadline) {
				t.Fatalf("password %q, want %q", lookup(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write("users: [{user: alice, domain: example.test, password: two}]")
	waitFor("two")
	// A broken file keeps the previous users.
	write("users: [{user: alice, domain: example.test, pasword: three}]")
	if _, err := f.Reload(); err == nil || !strings.Contains(err.Error(), `users[0]: unknown key "pasword"`) {
		t.Fatalf("broken file: %v", err)
	}
	if lookup() != "two" {
		t.Fatal("broken file replaced the users")
	}
	write("users: [{user: alice, domain: example.test, password: four}]")
	waitFor("four")

	if _, err := LoadUsers(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}
