// Package registrar is the SIP registrar of sipmesh (RFC 3261 §10.3, Path
// RFC 3327, outbound RFC 5626, GRUU RFC 5627).
//
// It owns the binding rules: add, refresh and remove (Expires: 0,
// Contact: *), several contacts per request, q-values, the minimum and
// maximum expiry (423 Interval Too Brief with Min-Expires), Call-ID/CSeq
// ordering, and the 200 OK that lists every current binding with its expiry.
// Each binding is one record of a replicated store keyed by the AOR
// ("user@domain", the form node.NormalizeKey gives); the record id is
// "+sip.instance;reg-id" when the contact carries an instance id, else the
// contact URI. Versions of one record are merged by [Newer]: with the same
// Call-ID the higher CSeq wins (RFC 3261 §10.3 step 7), so two nodes
// processing REGISTERs of one phone converge on what the phone sent last.
//
// Outbound (RFC 5626 §6): a REGISTER that supports outbound with a
// contact carrying +sip.instance and reg-id gets "Require: outbound" in its
// 200 (the edge adds Flow-Timer), or 439 when its first hop's Path entry
// lacks "ob".
//
// GRUU (RFC 5627, see gruu.go): with [WithGRUU], the 200 to a REGISTER
// that supports gruu carries pub-gruu and temp-gruu for every binding with
// an instance; [Registrar.LookupGRUU] resolves both on any node, temp-gruus
// without any state beyond the bindings (sealed with the cluster secret,
// valid while a binding of the instance keeps the Call-ID they were issued
// for). A contact that is a GRUU of the domain, or the AOR itself, is
// refused with 403 (it would loop).
//
// A record's value is [Binding.Encode]'s compact form (values written as
// JSON by earlier versions are still read); `sipmesh lookup` shows its
// fields as JSON next to the store's (the store adds "expires", seconds
// left).
//
// The registrar reaches the store and the authenticator through the small
// interfaces [Store] and [Authenticator] defined here; it depends on sipgo's
// message types and roles/sipstatus, and must not import overlay,
// memberlist or another role.
package registrar
