// Package relaypb is the generated protobuf and gRPC code of the media
// relay's control service defined in relay.proto. Do not edit: run
// `make proto`.
package relaypb
