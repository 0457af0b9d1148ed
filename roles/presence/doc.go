// Package presence is sipmesh's presence agent: a SIMPLE presence server
// for the cluster's domain, in the style of SIP Thor's presence role.
//
// # What it owns
//
//   - PUBLISH (RFC 3903) for the event package "presence" (RFC 3856):
//     initial publication, refresh (no body, SIP-If-Match), modify (body
//     and SIP-If-Match), remove (Expires: 0), expiry, 423 with Min-Expires
//     (RFC 3903 §6), 412 Conditional Request Failed for an unknown
//     entity-tag, 489 Bad Event with Allow-Events for any other event, 415
//     with Accept for a body that is not application/pidf+xml, 403 for a
//     PUBLISH from anyone but the presentity. Every successful PUBLISH
//     gets a new entity-tag (SIP-ETag).
//   - Composition (RFC 3863, RFC 3903 §5): a presentity's state is one
//     PIDF document holding the <tuple> and <note> elements of all its live
//     publications (oldest publication first; a tuple id met twice is
//     suffixed so ids stay unique). With no publication the document is an
//     empty <presence/> of the presentity: no tuple, no status.
//   - SUBSCRIBE/NOTIFY (RFC 6665, RFC 3856): 200 (or 202 when the
//     Authorizer says pending) and an immediate NOTIFY with the full state
//     (RFC 6665 §4.2.1.2); a NOTIFY on every change of the composed state;
//     refresh (§4.2.1.4) with a NOTIFY; unsubscribe (Expires: 0) and a
//     fetch (Expires: 0 on a new subscription, §4.4.3) answered with a
//     NOTIFY "terminated;reason=timeout"; expiry with
//     "terminated;reason=timeout"; removal of the presentity ([Agent.Remove]) with
//     "terminated;reason=noresource"; authorization refused on refresh
//     with "terminated;reason=rejected". A NOTIFY answered with a non-2xx
//     response (no Retry-After), or timing out, removes the subscription
//     (§4.2.2). At most one NOTIFY is in flight per dialog (§4.2.2); changes
//     while one is in flight are coalesced into one NOTIFY with the latest
//     state when it completes.
//
// # State on the ring
//
// Everything lives in the presence store, under the presentity's key
// ("user@domain", host lower-cased, as registrar.AOR). A publication is the
// record whose id is its entity-tag; a subscription is the record whose id
// is its dialog id ("Call-ID;local-tag;remote-tag"). A subscription record
// holds all that is needed to send a NOTIFY in its dialog (RFC 3261
// §12.2.1.1): remote target, route set, local and remote URI and tags,
// Call-ID, the last local CSeq used, the last remote CSeq seen, watcher,
// expiry and state. Record values are JSON ([Publication],
// [Subscription]), which `sipmesh lookup` shows as is.
//
// Records are kept in the store a grace period ([WithGrace]) past their
// own expiry, so that the sweep of whichever node owns the key then still
// finds them and sends the NOTIFY for the expiry; the agent itself ignores
// records past the expiry written in their value.
//
// # Who sends NOTIFYs
//
// The agent is stateless between requests: every PUBLISH, SUBSCRIBE and
// sweep reads the presentity's records from the store, and every NOTIFY
// first writes the subscription back with its CSeq incremented, then sends.
// The edge is expected to hand all PUBLISH and SUBSCRIBE requests of a
// presentity to the agent on the presentity's presence-ring owner
// (forwarding them over SIP when they arrive elsewhere, as REGISTER is
// forwarded to the registrar): the node that processes a PUBLISH is then
// the node that sends its NOTIFYs, and one node serialises everything a
// presentity's dialogs send (a per-presentity lock). When the owner dies,
// the next owner finds the subscription records in its replica and goes on
// at the stored CSeq + 1; its periodic sweep ([WithSweepInterval]) of the
// keys it owns handles the expiries. Should two nodes briefly both act for
// a presentity (ring views disagreeing during a change), the [Newer]
// merge rule keeps the subscription version with the higher local CSeq, so
// the store never goes backwards; a NOTIFY refused by the watcher because
// its CSeq was reused ends the subscription and the watcher subscribes
// again.
//
// # What the edge does
//
// For a request whose Request-URI is in the cluster's domain and for
// which [Handles] is true (any PUBLISH; a SUBSCRIBE with Event: presence,
// in or out of a dialog, once its own Route entries are removed), the
// edge, after its usual 407 challenge of subscribers, finds the owner of
// Key(Request-URI) on the presence ring. On the owner it calls
// [Agent.ServeSIP] with the server transaction, and answers
// sipstatus.Response(req, err) when that returns an error. Elsewhere it
// forwards the request to the owner over SIP, record-routing a SUBSCRIBE
// (flow token included) so that NOTIFYs, whose route set is that
// Record-Route, reach the watcher through the edge that holds its flow.
// NOTIFYs from the agent are ordinary in-dialog requests for the edge;
// MESSAGE is routed by location like any other request.
//
// Authorization of watchers is the [Authorizer]'s: by default a watcher
// of the presentity's own domain is allowed and any other is refused (403).
// A PUBLISH is accepted only from the presentity itself (From = the
// Request-URI's AOR; the edge authenticates From), else 403.
//
// The agent reaches the store through [Store] and sends NOTIFYs through
// [Sender], both defined here; [ClientSender] implements Sender over
// sipgo's client. The package depends on sipgo's message types,
// roles/sipstatus and roles/sipmsg; it must not import overlay,
// memberlist or another role (its subpackage ringstore adapts
// overlay/store).
package presence
