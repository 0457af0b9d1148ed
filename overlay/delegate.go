package overlay

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
)

// User message and push/pull state types (first byte).
const (
	msgCRL   byte = 1 // a DER revocation list
	msgLeave byte = 2 // a node's name: it is leaving on purpose
)

// delegate receives memberlist's callbacks. It is a separate type so that
// they do not become methods of Overlay.
type delegate struct{ o *Overlay }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
	_ memberlist.MergeDelegate = (*delegate)(nil)
)

// NodeMeta implements memberlist.Delegate. The metadata's size was checked
// against MetaMaxSize in New.
func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.o.meta) > limit {
		d.o.log.Error("overlay: node metadata exceeds memberlist's limit", "size", len(d.o.meta), "limit", limit)
		return nil
	}
	return d.o.meta
}

// NotifyMsg implements memberlist.Delegate.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case msgCRL:
		d.o.installCRL(b[1:], "gossip")
	case msgLeave:
		name := string(b[1:])
		if certs.ValidName("name", name) == nil {
			d.o.enqueue(event{kind: evLeaveIntent, name: name})
		}
	default:
		d.o.log.Debug("overlay: unknown user message", "type", b[0])
	}
}

// GetBroadcasts implements memberlist.Delegate.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.o.bcast.GetBroadcasts(overhead, limit)
}

// LocalState implements memberlist.Delegate: the revocation list rides on
// every push/pull, so a node that missed a broadcast catches up.
func (d *delegate) LocalState(join bool) []byte {
	der := crlDER(d.o.mat.CRL())
	if der == nil {
		return nil
	}
	return append([]byte{msgCRL}, der...)
}

// MergeRemoteState implements memberlist.Delegate.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) > 1 && buf[0] == msgCRL {
		d.o.installCRL(buf[1:], "push/pull")
	}
}

// NotifyJoin implements memberlist.EventDelegate.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.o.enqueue(event{kind: evAlive, name: n.Name, addr: n.Address(), meta: bytes.Clone(n.Meta)})
}

// NotifyUpdate implements memberlist.EventDelegate.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	d.o.enqueue(event{kind: evAlive, name: n.Name, addr: n.Address(), meta: bytes.Clone(n.Meta)})
}

// NotifyLeave implements memberlist.EventDelegate. memberlist does not say
// whether the node died or left (Node.State is not kept up to date); a
// leave intent received before or after decides.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.o.enqueue(event{kind: evDown, name: n.Name, addr: n.Address()})
}

// NotifyAlive implements memberlist.AliveDelegate: a node is refused when
// its metadata cannot be read or contradicts its certificate, its
// certificate is revoked, or the node that answers at its address holds
// another name.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	return d.o.checkPeer(n, "alive message", true)
}

// NotifyMerge implements memberlist.MergeDelegate: a push/pull from a peer
// whose view holds an unreadable or impersonating node is refused whole.
// Revoked entries are only skipped (by NotifyAlive, for each): the peer may
// simply not have the newest revocation list yet; it gets it in this very
// exchange.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		if err := d.o.checkPeer(n, "push/pull merge", false); err != nil {
			return err
		}
	}
	return nil
}

// checkPeer vets a node seen in gossip. revoked says whether a revoked
// certificate is a refusal here.
func (o *Overlay) checkPeer(n *memberlist.Node, stage string, revoked bool) error {
	if n.Name == o.name {
		return nil // memberlist refutes impostors of ourselves
	}
	addr := n.Address()
	md, serial, err := decodeMeta(n.Meta)
	if err != nil {
		return o.refuseGossip(reasonBadMetadata, fmt.Sprintf("node %q", n.Name), addr, stage, err)
	}
	peer := fmt.Sprintf("node %q (serial %s)", n.Name, serial)
	if o.mat.Revoked(serial) {
		if !revoked {
			return nil
		}
		return o.refuseGossip(string(certs.ReasonRevoked), peer, addr, stage, fmt.Errorf("serial %s is on the revocation list", serial))
	}
	if holder, ok := o.tr.nameAt(addr); ok && holder != n.Name {
		return o.refuseGossip(string(certs.ReasonNameMismatch), peer, addr, stage, fmt.Errorf("the node answering at %s holds the certificate of %q", addr, holder))
	}
	if id, ok := o.tr.identityOf(n.Name); ok && id.Serial.Cmp(serial) == 0 {
		if md.DC != id.Datacenter {
			return o.refuseGossip(reasonBadMetadata, peer, addr, stage, fmt.Errorf("gossips datacenter %q, its certificate says %q", md.DC, id.Datacenter))
		}
		for _, r := range md.Roles {
			if !id.HasRole(r) {
				return o.refuseGossip(reasonBadMetadata, peer, addr, stage, fmt.Errorf("gossips role %q, which its certificate does not allow", r))
			}
		}
	}
	return nil
}

func (o *Overlay) refuseGossip(reason, peer, addr, stage string, err error) error {
	o.ref.refuse(reason, peer, addr, stage, err)
	return fmt.Errorf("overlay: refused %s: %s: %w", peer, reason, err)
}

// installCRL installs a revocation list received from a peer; the
// signature and the CRL number are checked by certs.
func (o *Overlay) installCRL(data []byte, source string) {
	if len(data) == 0 {
		return
	}
	cur := o.mat.CRL()
	if bytes.Equal(data, cur) || bytes.Equal(data, crlDER(cur)) {
		return // the common case: a rebroadcast of what we have
	}
	changed, err := o.mat.UpdateCRL(data)
	if err != nil {
		o.log.Warn("overlay: revocation list from a peer rejected", "source", source, "err", err)
		return
	}
	if changed {
		o.crlChanged(source)
	}
}

// crlChanged acts on a newly installed revocation list: cut off the peers
// it revokes, tell the mesh, recompute the rings.
func (o *Overlay) crlChanged(source string) {
	o.log.Info("overlay: installed a newer revocation list", "source", source)
	for _, id := range o.tr.closeRevoked() {
		o.log.Info("overlay: closed connection of a revoked peer", "peer", id.String())
	}
	if o.mat.Revoked(o.mat.Self.Serial) {
		o.log.Error("overlay: this node's own certificate is revoked: peers refuse it and it is leaving the mesh; issue a new certificate with 'sipmesh cert issue' and restart",
			"node", o.mat.Self.Name, "serial", o.mat.Self.Serial.String())
	}
	if der := crlDER(o.mat.CRL()); der != nil {
		o.bcast.QueueBroadcast(&broadcast{kind: msgCRL, msg: append([]byte{msgCRL}, der...)})
	}
	o.enqueue(event{kind: evRecheck})
}

// watchCRL polls the CRL file.
func (o *Overlay) watchCRL(path string) {
	defer o.wg.Done()
	var lastErr string
	o.mat.WatchCRL(path, time.Second, o.stop,
		func() { lastErr = ""; o.crlChanged("file " + path) },
		func(err error) {
			// Said once per distinct error, not every second.
			if err.Error() != lastErr {
				lastErr = err.Error()
				o.log.Warn("overlay: revocation list file not usable; keeping the current list", "path", path, "err", err)
			}
		})
}

// crlDER returns the DER form of a PEM or DER list (smaller on the wire).
func crlDER(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes
	}
	return b
}

// broadcast is a user message spread by memberlist's gossip. A newer
// revocation list replaces an older one still queued.
type broadcast struct {
	kind byte
	msg  []byte
}

var _ memberlist.Broadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && o.kind == msgCRL && b.kind == msgCRL
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
