package overlay

// State is a member's state as the local node sees it.
type State string

const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// Names of the services a node advertises in its metadata; values are
// "host:port" addresses.
const (
	ServiceRPC    = "rpc"
	ServiceAdmin  = "admin"
	ServiceDNS    = "dns"
	ServiceSIPUDP = "sip-udp"
	ServiceSIPTCP = "sip-tcp"
	ServiceSIPTLS = "sip-tls"
	ServiceSIPWS  = "sip-ws"
	ServiceSIPWSS = "sip-wss"
)

// Member is one node of the mesh as the local node sees it.
type Member struct {
	Name       string            `json:"name"`
	Datacenter string            `json:"datacenter"`
	Roles      []string          `json:"roles"`
	State      State             `json:"state"`
	Address    string            `json:"address"` // gossip address, host:port
	Services   map[string]string `json:"services,omitempty"`
}

// HasRole reports whether the member runs role.
func (m Member) HasRole(role string) bool {
	for _, r := range m.Roles {
		if r == role {
			return true
		}
	}
	return false
}
