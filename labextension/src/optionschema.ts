/**
 * Options checked in the browser by their JSON Schema, as hubgate's service serves it
 * (built by hubgate/options/): the rules are the schema's keywords, the messages are
 * the templates under `x-hubgate-messages`, the same ones the service raises. Nothing
 * here knows an option type, so a new type needs no change here; the shared cases in
 * tests/options_cases.json check this file and Python against each other.
 */
import { dump as dumpYaml, load as loadYaml, YAMLException } from 'js-yaml';

import {
  FormInput,
  IFieldSchema,
  IOptionsSchema,
  IOptionsUiSchema
} from './types';

/** A checked input: the value to send, or the message to show. */
export type Checked =
  { ok: true; value: unknown } | { ok: false; error: string };

/** One option as a form shows it. */
export interface IFormField {
  name: string;
  label: string;
  help: string;
  input: FormInput;
  schema: IFieldSchema;
}

/** The options of a schema, in the order its UI hints give. */
export function formFields(
  schema: IOptionsSchema,
  ui: IOptionsUiSchema
): IFormField[] {
  const names = Object.keys(schema.properties);
  const order = (ui['ui:order'] ?? []).filter(
    name => name in schema.properties
  );
  const rest = names.filter(name => !order.includes(name));
  return [...order, ...rest].map(name => {
    const property = schema.properties[name];
    const hints = (ui[name] ?? {}) as {
      'ui:help'?: string;
      'ui:options'?: { input?: FormInput };
    };
    return {
      name,
      label: property.title || name,
      help: hints['ui:help'] ?? property.description ?? '',
      input: hints['ui:options']?.input ?? 'text',
      schema: property
    };
  });
}

/** A number typed with a point or an exponent: Python reads (and shows) it as a float. */
class TypedFloat {
  constructor(readonly value: number) {}
}

const INT_TEXT = /^[+-]?\d+$/;
const FLOAT_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Why a value fails: the keyword (with its path) and what its message shows. */
interface IFailure {
  keyword: string;
  got?: unknown;
  key?: string;
  kind?: string;
  where?: string;
  problem?: string;
}

function jsonType(value: unknown): string {
  if (value === null || value === undefined) {
    return 'null';
  }
  if (value instanceof TypedFloat) {
    return 'number';
  }
  if (Array.isArray(value)) {
    return 'array';
  }
  return typeof value;
}

function numberOf(value: unknown): number | undefined {
  if (value instanceof TypedFloat) {
    return value.value;
  }
  return typeof value === 'number' ? value : undefined;
}

function hasType(type: string, value: unknown): boolean {
  if (type === 'integer') {
    return typeof value === 'number' && Number.isInteger(value);
  }
  return type === jsonType(value);
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return jsonType(value) === 'object';
}

/** The first keyword of `schema` that `value` fails, in the schema's order. */
function check(
  schema: IFieldSchema,
  value: unknown,
  path = ''
): IFailure | null {
  const fail = (keyword: string): IFailure => ({
    keyword: path + keyword,
    got: value
  });
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some(type => hasType(type, value))) {
      return fail('type');
    }
  }
  const number = numberOf(value);
  const length = typeof value === 'string' ? [...value].length : undefined;
  for (const keyword of Object.keys(schema)) {
    const failed =
      (keyword === 'minimum' &&
        number !== undefined &&
        number < schema.minimum!) ||
      (keyword === 'maximum' &&
        number !== undefined &&
        number > schema.maximum!) ||
      (keyword === 'minLength' &&
        length !== undefined &&
        length < schema.minLength!) ||
      (keyword === 'maxLength' &&
        length !== undefined &&
        length > schema.maxLength!) ||
      (keyword === 'pattern' &&
        typeof value === 'string' &&
        !new RegExp(schema.pattern!, 'u').test(value)) ||
      (keyword === 'enum' && !schema.enum!.some(choice => choice === value)) ||
      (keyword === 'maxProperties' &&
        isMapping(value) &&
        Object.keys(value).length > schema.maxProperties!);
    if (failed) {
      return fail(keyword);
    }
  }
  if (isMapping(value)) {
    const items = schema.additionalProperties;
    for (const [key, item] of Object.entries(value)) {
      const failure =
        (schema.propertyNames &&
          check(schema.propertyNames, key, `${path}propertyNames/`)) ||
        (typeof items === 'object' &&
          check(items, item, `${path}additionalProperties/`));
      if (failure) {
        return { ...failure, key };
      }
    }
  }
  return null;
}

/** Python's repr() of a JSON value, which the service's templates show as `{x!r}`. */
function pyRepr(value: unknown): string {
  if (typeof value === 'string') {
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
    const escaped = value
      .replace(/\\/g, '\\\\')
      .replace(/\n/g, '\\n')
      .replace(/\r/g, '\\r')
      .replace(/\t/g, '\\t');
    return (
      quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote
    );
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (value === null || value === undefined) {
    return 'None';
  }
  if (value instanceof TypedFloat) {
    return Number.isInteger(value.value)
      ? value.value.toFixed(1)
      : String(value.value);
  }
  return typeof value === 'number' ? String(value) : JSON.stringify(value);
}

/** A message template filled in: `{name}`, `{name!r}`, `{name!r:.N}`, `{{`, `}}`. */
function render(template: string, failure: IFailure): string {
  return template.replace(
    /\{\{|\}\}|\{(\w+)(!r)?(?::\.(\d+))?\}/g,
    (match, name: string, repr: string, precision: string) => {
      if (match === '{{' || match === '}}') {
        return match[0];
      }
      const value = (failure as unknown as Record<string, unknown>)[name];
      let text: string;
      if (repr) {
        text = pyRepr(value);
      } else {
        const number = numberOf(value);
        text = number !== undefined ? String(number) : String(value ?? '');
      }
      return precision ? text.slice(0, Number(precision)) : text;
    }
  );
}

function message(
  field: IFormField,
  failure: IFailure,
  kinds: Record<string, string>
): string {
  const template = field.schema['x-hubgate-messages']?.[failure.keyword];
  if (template === undefined) {
    return `${field.name} is not valid (${failure.keyword})`;
  }
  const type = jsonType(failure.got);
  return render(template, { kind: kinds[type] ?? `a ${type}`, ...failure });
}

/** What an input holds, read the way the field's `input` hint says. */
function read(
  field: IFormField,
  raw: string | boolean
): { value: unknown } | { failure: IFailure } {
  if (typeof raw !== 'string') {
    return { value: raw };
  }
  if (field.input === 'number') {
    const text = raw.trim();
    if (!text) {
      return { failure: { keyword: 'empty' } };
    }
    if (INT_TEXT.test(text)) {
      return { value: Number(text) };
    }
    return {
      value: FLOAT_TEXT.test(text) ? new TypedFloat(Number(text)) : raw
    };
  }
  if (field.input === 'yaml' && raw.trim()) {
    try {
      return { value: loadYaml(raw) };
    } catch (err) {
      const mark = err instanceof YAMLException ? err.mark : undefined;
      const where = mark
        ? ` at line ${mark.line + 1}, column ${mark.column + 1}`
        : '';
      const problem =
        err instanceof YAMLException ? err.reason : 'it could not be parsed';
      return { failure: { keyword: 'syntax', where, problem } };
    }
  }
  return { value: field.input === 'yaml' ? {} : raw };
}

/** Check a JSON value for a field (what a request would send). */
export function checkValue(
  field: IFormField,
  value: unknown,
  kinds: Record<string, string>
): Checked {
  const failure = check(field.schema, value);
  if (failure) {
    return { ok: false, error: message(field, failure, kinds) };
  }
  return { ok: true, value: value instanceof TypedFloat ? value.value : value };
}

/** Check what a user entered: text, or a boolean for a checkbox. */
export function checkInput(
  field: IFormField,
  raw: string | boolean,
  kinds: Record<string, string>
): Checked {
  const reading = read(field, raw);
  if ('failure' in reading) {
    return { ok: false, error: message(field, reading.failure, kinds) };
  }
  return checkValue(field, reading.value, kinds);
}

/** The text an input shows for a value. */
export function inputText(field: IFormField, value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (field.input === 'yaml') {
    return Object.keys(value as Record<string, unknown>).length
      ? dumpYaml(value)
      : '';
  }
  return String(value);
}
