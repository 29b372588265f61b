/**
 * The shapes of hubgate's own API (`api/hubgate/...`, see docs/internals.md).
 */

/** One option field: the dask-gateway v1 spec entry plus hubgate's help text. */
export interface IOptionField {
  field: string;
  label: string;
  default: unknown;
  help?: string;
  spec: IFieldSpec;
}

export type FieldType =
  'int' | 'float' | 'string' | 'bool' | 'select' | 'mapping';

export interface IFieldSpec {
  type: FieldType;
  min?: number | null;
  max?: number | null;
  options?: string[];
}

export interface IOptionsReply {
  fields: IOptionField[];
}

export type ClusterStatus =
  'PENDING' | 'RUNNING' | 'STOPPING' | 'STOPPED' | 'FAILED';

export interface ICluster {
  /** The cluster's id (32 hex digits): what every URL uses. */
  name: string;
  /** The name people gave it (or the service picked); absent from older services. */
  display_name?: string;
  owner: string;
  status: ClusterStatus;
  reason: string | null;
  options: Record<string, unknown>;
  created: string | null;
  started: string | null;
  stopped: string | null;
  workers: { requested: number; running: number; pending: number };
  adaptive: {
    active: boolean;
    minimum: number | null;
    maximum: number | null;
  };
  threads: number;
  memory: number;
  cores: number;
  dashboard_url: string | null;
  scheduler_address: string | null;
  idle_since: number | null;
  events: { time: string; message: string }[];
}

export interface IClustersReply {
  clusters: ICluster[];
}

export interface IScaleReply {
  ok: boolean;
  msg: string | null;
  cluster: ICluster;
}
