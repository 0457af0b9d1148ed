package overlay

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"

	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
)

const metaVersion = 1

// nodeMeta is what a node gossips about itself in memberlist's node
// metadata (at most memberlist.MetaMaxSize bytes, hence the short keys).
type nodeMeta struct {
	V        int               `json:"v"`
	DC       string            `json:"dc"`
	Roles    []string          `json:"r,omitempty"`
	Services map[string]string `json:"s,omitempty"`
	Serial   string            `json:"sn"` // certificate serial, hex
}

func encodeMeta(dc string, roles []string, services map[string]string, serial *big.Int) ([]byte, error) {
	b, err := json.Marshal(nodeMeta{V: metaVersion, DC: dc, Roles: roles, Services: services, Serial: serial.Text(16)})
	if err != nil {
		return nil, fmt.Errorf("overlay: encode node metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("overlay: node metadata is %d bytes, more than memberlist's %d: advertise fewer or shorter services", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta parses and checks a peer's metadata.
func decodeMeta(b []byte) (nodeMeta, *big.Int, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil, errors.New("no metadata")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, nil, fmt.Errorf("metadata is not sipmesh JSON: %w", err)
	}
	if m.V != metaVersion {
		return m, nil, fmt.Errorf("metadata version %d, want %d", m.V, metaVersion)
	}
	if err := certs.ValidName("datacenter", m.DC); err != nil {
		return m, nil, err
	}
	if err := certs.ValidRoles(m.Roles); err != nil {
		return m, nil, err
	}
	for k, v := range m.Services {
		if _, _, err := net.SplitHostPort(v); k == "" || err != nil {
			return m, nil, fmt.Errorf("service %q has a bad address %q", k, v)
		}
	}
	serial, ok := new(big.Int).SetString(m.Serial, 16)
	if !ok || serial.Sign() <= 0 {
		return m, nil, fmt.Errorf("bad certificate serial %q", m.Serial)
	}
	return m, serial, nil
}
