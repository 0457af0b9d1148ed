// Package rpc owns node-to-node calls: a gRPC server and a pool of gRPC
// client connections, both authenticated with the node's mTLS identity
// (package certs), so that a call reaches exactly the node it names and
// only nodes of the cluster can call.
//
// The server requires a node certificate of the cluster (operator
// certificates are refused: they may only use the admin API) and logs every
// refusal with its reason. The client dials the address a member advertises
// under overlay.ServiceRPC and requires the server's certificate to carry
// that member's name; it keeps one connection per node name and drops it
// when the member is gone, dead or has moved.
//
// The services and messages are defined in proto/*.proto; the generated code
// lives in meshpb and is committed. Regenerate it from the module root with:
//
//	protoc -I overlay/rpc/proto \
//	  --go_out=. --go_opt=module=github.com/sipmesh/sipmesh \
//	  --go-grpc_out=. --go-grpc_opt=module=github.com/sipmesh/sipmesh \
//	  overlay/rpc/proto/*.proto
//
// rpc knows nothing of SIP or of what the services mean: it must not import
// roles, dnsprov, node or overlay/store.
package rpc
