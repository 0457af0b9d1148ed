package dnsprov

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sipmesh/sipmesh/overlay"
)

// Record is one published resource record. Its JSON form is what
// `sipmesh dns records --json` prints:
//
//	{"name": "_sip._udp.example.test.", "type": "SRV", "ttl": 30,
//	 "data": "10 10 5060 n1.example.test.", "node": "n1"}
//
// name is the owner name, fully qualified, lower case; type is one of SOA,
// NS, NAPTR, SRV, A, AAAA, TXT; ttl is in seconds; data is the RDATA in
// zone-file presentation format (RFC 1035 §5.1); node names the member the
// record describes and is absent for cluster-wide records (SOA, NS, NAPTR).
type Record struct {
	Name string `json:"name"`
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
	Node string `json:"node,omitempty"`
}

// String formats r as a zone-file line.
func (r Record) String() string {
	return r.Name + "\t" + strconv.FormatUint(uint64(r.TTL), 10) + "\tIN\t" + r.Type + "\t" + r.Data
}

// Zone is what a server publishes at one moment. JSON:
// {"zone": "example.test.", "serial": 1760000000, "records": [Record...]}.
type Zone struct {
	Origin  string   `json:"zone"`
	Serial  uint32   `json:"serial"`
	Records []Record `json:"records"`

	built []Record // Build's output, SOA serial 0: detects changes
}

// Next returns the zone publishing records: z itself when they are what z
// was built from, otherwise a zone whose serial has grown to
// max(z.Serial+1, unix time) — monotonic across restarts with a sane clock,
// and plain integers are enough until 2106 (RFC 1982 arithmetic not needed).
func (z Zone) Next(origin string, records []Record, now time.Time) Zone {
	if z.built != nil && z.Origin == origin && slices.Equal(z.built, records) {
		return z
	}
	serial := z.Serial + 1
	if u := now.Unix(); u > int64(serial) && u <= int64(^uint32(0)) {
		serial = uint32(u)
	}
	out := Zone{Origin: origin, Serial: serial, Records: slices.Clone(records), built: append(make([]Record, 0, len(records)), records...)}
	for i, r := range out.Records {
		if r.Type == "SOA" {
			f := strings.Fields(r.Data)
			if len(f) == 7 {
				f[2] = strconv.FormatUint(uint64(serial), 10)
				out.Records[i].Data = strings.Join(f, " ")
			}
		}
	}
	return out
}

// Records is what the mesh publishes now as seen from the node of src:
// the records its embedded server serves (without the SOA serial, which
// Server.Zone has). For `sipmesh dns records`.
func Records(cfg Config, src Membership) ([]Record, error) {
	self := src.Self()
	return Build(cfg, withSelf(src.Members(), self), Perspective{Self: self.Name, Datacenter: self.Datacenter})
}

// Perspective says who publishes. The embedded server of a node sets Self
// (its name: SOA MNAME, NS fallback) and Datacenter (whose nodes get the
// best SRV priority at the cluster's own names). The shared RFC 2136 zone
// leaves both empty: no SOA/NS (the primary owns them), equal priorities.
type Perspective struct {
	Self       string
	Datacenter string
}

// SRV priorities: the preferred datacenter's nodes first (RFC 2782).
const (
	prioNear   = 10
	prioFar    = 20
	srvWeight  = 10
	naptrOrder = 10
)

// transport maps an overlay service to its RFC 3263 / RFC 7118 names.
type transport struct {
	service string // overlay service name
	srv     string // SRV owner prefix
	naptr   string // NAPTR service field
	pref    uint16 // NAPTR preference
	name    string // Target.Transport
}

// transports in NAPTR preference order: secure first, then TCP before UDP
// (as in the RFC 3263 §4.1 example), WebSocket last (RFC 7118 §9: browsers
// do not use NAPTR; SIP-over-WS gateways may).
func transports() []transport {
	return []transport{
		{overlay.ServiceSIPTLS, "_sips._tcp", "SIPS+D2T", 10, "tls"},
		{overlay.ServiceSIPTCP, "_sip._tcp", "SIP+D2T", 20, "tcp"},
		{overlay.ServiceSIPUDP, "_sip._udp", "SIP+D2U", 30, "udp"},
		{overlay.ServiceSIPWSS, "_sips._ws", "SIPS+D2W", 40, "wss"},
		{overlay.ServiceSIPWS, "_sip._ws", "SIP+D2W", 50, "ws"},
	}
}

const seedPrefix = "_sipmesh._tcp"

// Build is the pure function from membership to the records of the cluster
// domain as seen from p (see the package doc for the layout). Members in any
// state may be passed; only alive ones are published, but the datacenters
// of all of them get their own tree so that a datacenter whose proxies are
// all down still answers with the others. The result is in a deterministic
// order: DNS canonical name order (RFC 4034 §6.1), then type, then data.
func Build(cfg Config, members []overlay.Member, p Perspective) ([]Record, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &builder{origin: cfg.Cluster + ".", ttl: uint32(max(1, cfg.TTL/time.Second))}

	alive := aliveMembers(members)
	var dcs []string
	if cfg.PerDatacenter {
		dcs = datacenters(members)
	}

	for _, m := range alive {
		if ip, ok := hostIP(m.Address); ok {
			b.addr(m.Name+"."+b.origin, ip, m.Name)
		}
		if target, port, ok := b.target(m, "gossip", m.Address); ok {
			b.srv(seedPrefix+"."+b.origin, priority(m.Datacenter, p.Datacenter), port, target, m.Name)
		}
	}

	type entry struct {
		m      overlay.Member
		target string
		port   uint16
	}
	for _, t := range transports() {
		var es []entry
		for _, m := range alive {
			hp, ok := m.Services[t.service]
			if !ok || !m.HasRole(cfg.ProxyRole) {
				continue
			}
			if target, port, ok := b.target(m, t.service, hp); ok {
				es = append(es, entry{m, target, port})
			}
		}
		if len(es) == 0 {
			continue
		}
		b.naptr(b.origin, t, t.srv+"."+b.origin)
		for _, e := range es {
			b.srv(t.srv+"."+b.origin, priority(e.m.Datacenter, p.Datacenter), e.port, e.target, e.m.Name)
		}
		for _, dc := range dcs {
			d := dc + "." + b.origin
			b.naptr(d, t, t.srv+"."+d)
			for _, e := range es {
				b.srv(t.srv+"."+d, priority(e.m.Datacenter, dc), e.port, e.target, e.m.Name)
			}
		}
	}

	if p.Self != "" {
		var ns []string
		for _, m := range alive {
			if _, ok := m.Services[overlay.ServiceDNS]; ok {
				ns = append(ns, m.Name+"."+b.origin)
			}
		}
		mname := strings.ToLower(p.Self) + "." + b.origin
		if len(ns) == 0 {
			ns = []string{mname}
		}
		for _, n := range ns {
			b.add(b.origin, "NS", n, "", [3]int{}, n)
		}
		// Serial 0 is a placeholder that Zone.Next fills in.
		b.add(b.origin, "SOA", fmt.Sprintf("%s hostmaster.%s 0 3600 600 86400 %d", mname, b.origin, b.ttl), "", [3]int{}, "")
	}
	return b.records(), nil
}

// priority is the SRV priority of a node in dc as seen from preferred.
func priority(dc, preferred string) uint16 {
	if preferred == "" || dc == preferred {
		return prioNear
	}
	return prioFar
}

// aliveMembers returns the alive members with a valid node name, sorted by
// name, first one of a name kept.
func aliveMembers(members []overlay.Member) []overlay.Member {
	var out []overlay.Member
	for _, m := range members {
		if m.State == overlay.StateAlive && validLabel(m.Name) {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b overlay.Member) int { return cmp.Compare(a.Name, b.Name) })
	return slices.CompactFunc(out, func(a, b overlay.Member) bool { return a.Name == b.Name })
}

// datacenters lists the distinct valid datacenter names of members.
func datacenters(members []overlay.Member) []string {
	var out []string
	for _, m := range members {
		if validLabel(m.Datacenter) {
			out = append(out, m.Datacenter)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// hostIP returns the IP of a host:port whose host is an IP literal.
func hostIP(hostport string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

type builder struct {
	origin string
	ttl    uint32
	out    []keyed
}

type keyed struct {
	Record
	name string // canonical sort key of Record.Name
	rank int
	key  [3]int
	sub  string
}

// target returns the SRV target and port for a service of m at hostport.
// An IP equal to the node's own (or unspecified) is the node's name; another
// IP gets <service>.<node>.<origin> with its own address record; a host name
// is used as it is.
func (b *builder) target(m overlay.Member, service, hostport string) (string, uint16, bool) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return "", 0, false
	}
	nodeName := m.Name + "." + b.origin
	nodeIP, nodeOK := hostIP(m.Address)
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil && host != "":
		return strings.ToLower(strings.TrimSuffix(host, ".")) + ".", uint16(port), true
	case err != nil || ip.IsUnspecified() || ip.Unmap().WithZone("") == nodeIP:
		return nodeName, uint16(port), nodeOK
	}
	sub := service + "." + nodeName
	b.addr(sub, ip.Unmap().WithZone(""), m.Name)
	return sub, uint16(port), true
}

func (b *builder) addr(name string, ip netip.Addr, node string) {
	t := "A"
	if ip.Is6() {
		t = "AAAA"
	}
	b.add(name, t, ip.String(), node, [3]int{}, ip.StringExpanded())
}

func (b *builder) srv(name string, prio, port uint16, target, node string) {
	b.add(name, "SRV", fmt.Sprintf("%d %d %d %s", prio, srvWeight, port, target), node,
		[3]int{int(prio), 0, int(port)}, target)
}

func (b *builder) naptr(name string, t transport, replacement string) {
	b.add(name, "NAPTR", fmt.Sprintf(`%d %d "s" "%s" "" %s`, naptrOrder, t.pref, t.naptr, replacement), "",
		[3]int{naptrOrder, int(t.pref)}, replacement)
}

func (b *builder) add(name, typ, data, node string, key [3]int, sub string) {
	b.out = append(b.out, keyed{
		Record: Record{Name: name, Type: typ, TTL: b.ttl, Data: data, Node: node},
		name:   canonicalKey(name), rank: typeRank(typ), key: key, sub: sub,
	})
}

// records sorts and de-duplicates.
func (b *builder) records() []Record {
	slices.SortStableFunc(b.out, func(x, y keyed) int {
		return cmp.Or(cmp.Compare(x.name, y.name), cmp.Compare(x.rank, y.rank),
			cmp.Compare(x.key[0], y.key[0]), cmp.Compare(x.key[1], y.key[1]),
			cmp.Compare(x.sub, y.sub), cmp.Compare(x.key[2], y.key[2]), cmp.Compare(x.Data, y.Data))
	})
	out := make([]Record, 0, len(b.out))
	for i, k := range b.out {
		if i > 0 && b.out[i-1].Name == k.Name && b.out[i-1].Type == k.Type && b.out[i-1].Data == k.Data {
			continue
		}
		out = append(out, k.Record)
	}
	return out
}

// canonicalKey orders names as RFC 4034 §6.1 does for our lower-case
// LDH/underscore names: by labels from the root. \x00 sorts a parent before
// its children.
func canonicalKey(name string) string {
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, "\x00")
}

func typeRank(t string) int {
	switch t {
	case "SOA":
		return 0
	case "NS":
		return 1
	case "NAPTR":
		return 2
	case "SRV":
		return 3
	case "A":
		return 4
	case "AAAA":
		return 5
	}
	return 6
}
