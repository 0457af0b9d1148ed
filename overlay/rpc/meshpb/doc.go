// Package meshpb is the generated protobuf and gRPC code of the node-to-node
// services defined in overlay/rpc/proto. Do not edit: run `make proto`.
package meshpb
