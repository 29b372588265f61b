/**
 * The shapes of hubgate's own API (`api/hubgate/...`, see docs/internals.md).
 */

/**
 * One option's JSON Schema, as hubgate.options produces it: the rules a value must meet
 * (JSON Schema keywords) and, under `x-hubgate-messages`, the message templates for each
 * keyword it can fail (the service's own messages).
 */
export interface IFieldSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: unknown[];
  maxProperties?: number;
  propertyNames?: IFieldSchema;
  additionalProperties?: IFieldSchema | boolean;
  'x-hubgate-messages'?: Record<string, string>;
}

/** The JSON Schema of a request's options. */
export interface IOptionsSchema {
  type: 'object';
  properties: Record<string, IFieldSchema>;
  /** Words for value types in messages, by JSON type ("a list" for an array). */
  'x-hubgate-kinds': Record<string, string>;
}

/** How a form reads what people type for an option. */
export type FormInput = 'text' | 'number' | 'checkbox' | 'choice' | 'yaml';

/** Form hints, in react-jsonschema-form's uiSchema format. */
export interface IOptionsUiSchema {
  'ui:order': string[];
  [field: string]:
    string[] | { 'ui:help'?: string; 'ui:options'?: { input?: FormInput } };
}

export interface IOptionsReply {
  schema: IOptionsSchema;
  ui_schema: IOptionsUiSchema;
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
