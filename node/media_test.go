package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/roles/proxy"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// The relay of a call: the ring's order for its Call-ID, this node's
// datacenter first, relays that just failed last.
func TestRelayOrder(t *testing.T) {
	now := time.Now()
	ringOrder := []ring.Node{{Name: "r1", Datacenter: "dc2"}, {Name: "r2", Datacenter: "dc1"}, {Name: "r3", Datacenter: "dc2"}, {Name: "r4", Datacenter: "dc1"}}
	cases := []struct {
		dc     string
		failed map[string]time.Time
		want   []string
	}{
		{"dc1", nil, []string{"r2", "r4", "r1", "r3"}},
		{"dc2", nil, []string{"r1", "r3", "r2", "r4"}},
		{"dc3", nil, []string{"r1", "r2", "r3", "r4"}},
		{"dc1", map[string]time.Time{"r2": now.Add(-time.Second)}, []string{"r4", "r1", "r3", "r2"}},
		{"dc1", map[string]time.Time{"r2": now.Add(-time.Hour)}, []string{"r2", "r4", "r1", "r3"}},
	}
	for _, c := range cases {
		if got := relayOrder(ringOrder, c.dc, c.failed, now); !reflect.DeepEqual(got, c.want) {
			t.Errorf("dc %s, failed %v: %v, want %v", c.dc, c.failed, got, c.want)
		}
	}
}

// An SDP updates its sender's side only; a hold address is no address.
func TestStreamSpecs(t *testing.T) {
	media, err := relay.ParseSDP([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	prev := []relay.StreamSpec{{A: relay.Peer{Family: "IP4"}, B: relay.Peer{Family: "IP6"}}}
	specs, merged := streamSpecs(proxy.SideA, media, prev)
	if len(specs) != 2 || specs[0].A.RTP.String() != "192.0.2.1:4000" || specs[0].B != (relay.Peer{}) ||
		specs[1].A.RTP.IsValid() || specs[1].A.Family != "IP4" {
		t.Errorf("specs %+v", specs)
	}
	if len(merged) != 2 || merged[0].B.Family != "IP6" || merged[0].A.RTP.String() != "192.0.2.1:4000" {
		t.Errorf("merged %+v", merged)
	}
}
