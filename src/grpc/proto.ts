// Loads proto/runtime.proto with @grpc/proto-loader, with the options the codec (src/runtime/proto-codec.ts)
// relies on: snake_case field names (the JSON keys), int64 as JS numbers, enums as names, no defaults filled
// in (so an unset field reads as undefined: presence), and the name of the set member of every oneof.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { projectRoot } from '../native/addon.js';

export const PROTO_PACKAGE = 'sglang.runtime.v1';
export const RUNTIME_SERVICE = `${PROTO_PACKAGE}.Runtime`;

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};

export function protoPath(): string {
  return path.join(projectRoot(), 'proto', 'runtime.proto');
}

let cached: protoLoader.PackageDefinition | null = null;

/** The package definition of proto/runtime.proto (loaded once). */
export function runtimePackageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
  return cached;
}

/** The service definition of sglang.runtime.v1.Runtime and a client constructor for it. */
export function runtimeService(): { definition: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  const loaded = grpc.loadPackageDefinition(runtimePackageDefinition());
  let node: unknown = loaded;
  for (const part of RUNTIME_SERVICE.split('.')) node = (node as Record<string, unknown>)[part];
  const Client = node as grpc.ServiceClientConstructor;
  return { definition: Client.service, Client };
}

/** Trailing-metadata keys that carry a RuntimeError exactly (the gRPC code alone loses the HTTP status). */
export const ERROR_STATUS_KEY = 'x-error-status';
export const ERROR_FORMAT_KEY = 'x-error-format';
/** Set to "plain" when the runtime threw an error that is not a RuntimeError. */
export const ERROR_KIND_KEY = 'x-error-kind';
