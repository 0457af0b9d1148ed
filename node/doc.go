// Package node assembles a sipmesh node from its configuration: it loads the
// certificate material, starts the overlay, the roles the certificate and
// config allow, DNS provisioning and the admin API, and runs them until the
// node is told to stop, leaving the mesh gracefully.
//
// node is the only package that imports every other; nothing imports node
// except cmd/sipmesh.
package node
