package digest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// StaticUsers is an in-memory Users table.
type StaticUsers struct {
	m map[string]Credentials // "user@realm", realm lower-cased
}

func userKey(user, realm string) string { return user + "@" + strings.ToLower(realm) }

// NewStaticUsers returns a table holding a copy of the given credentials,
// keyed "user@domain".
func NewStaticUsers(creds map[string]Credentials) *StaticUsers {
	m := make(map[string]Credentials, len(creds))
	for k, c := range creds {
		user, domain, _ := strings.Cut(k, "@")
		m[userKey(user, domain)] = c
	}
	return &StaticUsers{m: m}
}

// Lookup implements Users.
func (s *StaticUsers) Lookup(_ context.Context, user, realm string) (Credentials, error) {
	c, ok := s.m[userKey(user, realm)]
	if !ok {
		return Credentials{}, fmt.Errorf("%w: %s@%s", ErrUnknownUser, user, realm)
	}
	return c, nil
}

// Len is the number of users.
func (s *StaticUsers) Len() int { return len(s.m) }

// ParseUsers reads a users file:
//
//	users:
//	  - {user: alice, domain: example.test, password: s3cret}
//	  - {user: bob, domain: example.test, ha1: <32 hex>, ha1_sha256: <64 hex>}
//
// Each entry has user and domain and either password or at least one of ha1
// (MD5) and ha1_sha256, computed over user:domain:password. Errors name the
// source, the entry index and the key.
func ParseUsers(data []byte, source string) (*StaticUsers, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("digest: users file %s: %s", source, fmt.Sprintf(format, args...))
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fail("not valid YAML: %v", err)
	}
	var top map[string]json.RawMessage
	if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
		return &StaticUsers{m: map[string]Credentials{}}, nil
	}
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, fail("the top level must be a mapping with the key users")
	}
	for k := range top {
		if k != "users" {
			return nil, fail("unknown key %q at the top level (only users is allowed)", k)
		}
	}
	var list []json.RawMessage
	if raw, ok := top["users"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fail("users must be a list of mappings")
		}
	}
	entries := make([]map[string]any, len(list))
	for i, raw := range list {
		if err := json.Unmarshal(raw, &entries[i]); err != nil {
			return nil, fail("users[%d]: must be a mapping with user, domain and password or ha1", i)
		}
	}
	allowed := []string{"user", "domain", "password", "ha1", "ha1_sha256"}
	m := make(map[string]Credentials, len(entries))
	firstIndex := make(map[string]int, len(entries))
	for i, e := range entries {
		if e == nil {
			return nil, fail("users[%d]: must be a mapping with user, domain and password or ha1", i)
		}
		keys := make([]string, 0, len(e))
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fields := map[string]string{}
		for _, k := range keys {
			if !contains(allowed, k) {
				return nil, fail("users[%d]: unknown key %q (allowed: %s)", i, k, strings.Join(allowed, ", "))
			}
			s, ok := e[k].(string)
			if !ok {
				return nil, fail("users[%d].%s: must be a string (quote it)", i, k)
			}
			fields[k] = s
		}
		user, domain := fields["user"], strings.ToLower(fields["domain"])
		switch {
		case user == "":
			return nil, fail("users[%d].user: missing", i)
		case strings.ContainsAny(user, " \t\r\n@:\""):
			return nil, fail("users[%d].user: %q must not contain white space, '@', ':' or '\"'", i, user)
		case domain == "":
			return nil, fail("users[%d].domain: missing", i)
		case strings.ContainsAny(domain, " \t\r\n@:\"/"):
			return nil, fail("users[%d].domain: %q is not a domain name", i, domain)
		}
		c := Credentials{Password: fields["password"]}
		for _, h := range []struct {
			key string
			alg Algorithm
		}{{"ha1", MD5}, {"ha1_sha256", SHA256}} {
			v, ok := fields[h.key]
			if !ok {
				continue
			}
			if len(v) != h.alg.hexLen() || !isHex(v) {
				return nil, fail("users[%d].%s: must be %d hex digits (the %s of user:domain:password)", i, h.key, h.alg.hexLen(), h.alg)
			}
			if c.HA1 == nil {
				c.HA1 = map[Algorithm]string{}
			}
			c.HA1[h.alg] = strings.ToLower(v)
		}
		switch {
		case c.Password != "" && c.HA1 != nil:
			return nil, fail("users[%d]: give either password or ha1/ha1_sha256, not both", i)
		case c.Password == "" && c.HA1 == nil:
			if _, ok := fields["password"]; ok {
				return nil, fail("users[%d].password: empty", i)
			}
			return nil, fail("users[%d]: missing password (or ha1/ha1_sha256)", i)
		}
		key := userKey(user, domain)
		if j, dup := firstIndex[key]; dup {
			return nil, fail("users[%d]: %s@%s is already defined by users[%d]", i, user, domain, j)
		}
		firstIndex[key] = i
		m[key] = c
	}
	return &StaticUsers{m: m}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// FileUsers is a Users table read from a YAML file (see ParseUsers) and
// re-read when the file changes. A file that fails to parse leaves the
// previous table in place.
type FileUsers struct {
	path string
	log  *slog.Logger

	mu    sync.RWMutex
	table *StaticUsers
	sum   [sha256.Size]byte
}

// FileOption configures FileUsers.
type FileOption func(*FileUsers)

// WithFileLogger sets the logger for reloads.
func WithFileLogger(l *slog.Logger) FileOption {
	return func(f *FileUsers) {
		if l != nil {
			f.log = l
		}
	}
}

// LoadUsers reads the users file at path.
func LoadUsers(path string, opts ...FileOption) (*FileUsers, error) {
	f := &FileUsers{path: path, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(f)
	}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Lookup implements Users.
func (f *FileUsers) Lookup(ctx context.Context, user, realm string) (Credentials, error) {
	f.mu.RLock()
	t := f.table
	f.mu.RUnlock()
	return t.Lookup(ctx, user, realm)
}

// Len is the number of users loaded.
func (f *FileUsers) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.table.Len()
}

// Reload re-reads the file if its content changed and reports whether the
// table was replaced.
func (f *FileUsers) Reload() (bool, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("digest: reading users file: %w", err)
	}
	sum := sha256.Sum256(data)
	f.mu.RLock()
	same := f.table != nil && sum == f.sum
	f.mu.RUnlock()
	if same {
		return false, nil
	}
	t, err := ParseUsers(data, f.path)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	f.table, f.sum = t, sum
	f.mu.Unlock()
	f.log.Info("digest: users file loaded", "path", f.path, "users", t.Len())
	return true, nil
}

// Watch polls the file every interval (default 2s) and reloads it when its
// content changes, until ctx is done. Errors are logged and the previous
// table is kept.
func (f *FileUsers) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := f.Reload(); err != nil {
				f.log.Error("digest: users file not reloaded, keeping the previous users", "path", f.path, "error", err)
			}
		}
	}
}
