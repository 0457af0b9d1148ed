package relay_test

import (
	"net/netip"
	"testing"

	"github.com/sipmesh/sipmesh/roles/relay"
)

func TestBehindNAT(t *testing.T) {
	ap := netip.MustParseAddrPort
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		p    relay.Party
		nat  bool
	}{
		{"public, all agree", relay.Party{Source: ap("203.0.113.5:5060"), Contact: ap("203.0.113.5:5060"), Datagram: true, Media: []netip.Addr{ip("203.0.113.5")}}, false},
		{"contact default port", relay.Party{Source: ap("203.0.113.5:5060"), Contact: ap("203.0.113.5:0"), Datagram: true}, false},
		{"contact IP differs", relay.Party{Source: ap("203.0.113.5:5060"), Contact: ap("192.168.1.10:5060"), Datagram: true}, true},
		{"contact public but not the source", relay.Party{Source: ap("203.0.113.5:5060"), Contact: ap("198.51.100.9:5060")}, true},
		{"udp port mapped", relay.Party{Source: ap("203.0.113.5:31000"), Contact: ap("203.0.113.5:5060"), Datagram: true}, true},
		{"tcp source port is ephemeral", relay.Party{Source: ap("203.0.113.5:31000"), Contact: ap("203.0.113.5:5060"), Datagram: false}, false},
		{"private SDP behind public source", relay.Party{Source: ap("203.0.113.5:5060"), Media: []netip.Addr{ip("10.1.2.3")}}, true},
		{"CGNAT SDP", relay.Party{Source: ap("203.0.113.5:5060"), Media: []netip.Addr{ip("100.64.3.4")}}, true},
		{"ULA SDP", relay.Party{Source: ap("[2001:db8::1]:5060"), Media: []netip.Addr{ip("fd00::1")}}, true},
		{"link-local SDP", relay.Party{Source: ap("203.0.113.5:5060"), Media: []netip.Addr{ip("169.254.0.9")}}, true},
		{"private LAN, SDP is the source", relay.Party{Source: ap("192.168.1.10:5060"), Contact: ap("192.168.1.10:5060"), Datagram: true, Media: []netip.Addr{ip("192.168.1.10")}}, false},
		{"hold address ignored", relay.Party{Source: ap("203.0.113.5:5060"), Media: []netip.Addr{ip("0.0.0.0")}}, false},
		{"public SDP elsewhere (a media server)", relay.Party{Source: ap("203.0.113.5:5060"), Media: []netip.Addr{ip("198.51.100.7")}}, false},
		{"contact hostname unknown", relay.Party{Source: ap("203.0.113.5:5060")}, false},
		{"v4-mapped source", relay.Party{Source: ap("[::ffff:203.0.113.5]:5060"), Contact: ap("203.0.113.5:5060"), Datagram: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nat, why := relay.BehindNAT(tc.p)
			if nat != tc.nat || (nat && why == "") {
				t.Fatalf("BehindNAT = %v (%q), want %v", nat, why, tc.nat)
			}
		})
	}
}

func TestNeedsRelay(t *testing.T) {
	public := relay.Party{Source: netip.MustParseAddrPort("203.0.113.5:5060"), Contact: netip.MustParseAddrPort("203.0.113.5:5060"), Datagram: true}
	natted := relay.Party{Source: netip.MustParseAddrPort("203.0.113.6:40000"), Contact: netip.MustParseAddrPort("192.168.0.2:5060"), Datagram: true}
	for _, tc := range []struct {
		mode    relay.Mode
		parties []relay.Party
		want    bool
	}{
		{relay.ModeAlways, []relay.Party{public, public}, true},
		{relay.ModeNever, []relay.Party{natted, natted}, false},
		{relay.ModeNAT, []relay.Party{public, public}, false},
		{relay.ModeNAT, []relay.Party{public, natted}, true},
		{relay.ModeNAT, []relay.Party{natted}, true},
		{"bogus", []relay.Party{public}, true},
	} {
		if got := relay.NeedsRelay(tc.mode, tc.parties...); got != tc.want {
			t.Errorf("NeedsRelay(%s, %d parties) = %v, want %v", tc.mode, len(tc.parties), got, tc.want)
		}
	}
	for in, want := range map[string]relay.Mode{"": relay.ModeAlways, "nat": relay.ModeNAT, "always": relay.ModeAlways, "never": relay.ModeNever} {
		if m, err := relay.ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := relay.ParseMode("sometimes"); err == nil {
		t.Error("ParseMode accepted sometimes")
	}
}
