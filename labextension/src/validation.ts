/**
 * Option validation in the browser: the same rules and messages as hubgate's Python
 * option fields (hubgate/options.py), so a value rejected here would be rejected by
 * the service with the same words, and one accepted here is accepted there.
 */
import { dump as dumpYaml, load as loadYaml, YAMLException } from 'js-yaml';

import { IOptionField } from './types';

/** A checked input: the value to send, or the message to show. */
export type Checked =
  { ok: true; value: unknown } | { ok: false; error: string };

const INT_TEXT = /^[+-]?\d+$/;
const FLOAT_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Python's repr() of a value, as the service's messages print it. */
export function pyRepr(value: unknown): string {
  if (typeof value === 'string') {
    if (value.includes("'") && !value.includes('"')) {
      return `"${value}"`;
    }
    return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (value === null || value === undefined) {
    return 'None';
  }
  if (typeof value === 'number') {
    return String(value);
  }
  return String(value);
}

/** Numbers as the service writes them in messages: 4 rather than 4.0. */
export function numberText(value: number): string {
  return String(value);
}

/** Python's repr() of a float: whole values keep their ".0". */
function floatRepr(value: number): string {
  return Number.isInteger(value) ? `${value}.0` : String(value);
}

function kindOf(value: unknown): string {
  if (typeof value === 'boolean') {
    return 'a boolean';
  }
  if (typeof value === 'number') {
    return 'a number';
  }
  if (typeof value === 'string') {
    return 'a string';
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (value === null || value === undefined) {
    return 'nothing';
  }
  return `a ${typeof value}`;
}

/** Text typed in a number box, as the Python form parses it. */
export function parseNumberText(text: string): number | string {
  const stripped = text.trim();
  if (INT_TEXT.test(stripped) || FLOAT_TEXT.test(stripped)) {
    return Number(stripped);
  }
  return text;
}

function checkBounds(field: IOptionField, value: number): Checked {
  const { min, max } = field.spec;
  if (min !== null && min !== undefined && value < min) {
    return {
      ok: false,
      error: `${field.field} must be at least ${numberText(min)}, got ${numberText(value)}`
    };
  }
  if (max !== null && max !== undefined && value > max) {
    return {
      ok: false,
      error: `${field.field} must be at most ${numberText(max)}, got ${numberText(value)}`
    };
  }
  return { ok: true, value };
}

function checkInt(field: IOptionField, text: string): Checked {
  if (!text.trim()) {
    return { ok: false, error: `${field.field} needs a number` };
  }
  const value = parseNumberText(text);
  if (typeof value !== 'number' || !INT_TEXT.test(text.trim())) {
    return {
      ok: false,
      // Python parsed "2.5" or "1e3" as a float: its repr is what the message shows.
      error: `${field.field} must be an integer, got ${
        typeof value === 'number' ? floatRepr(value) : pyRepr(value)
      }`
    };
  }
  return checkBounds(field, value);
}

function checkFloat(field: IOptionField, text: string): Checked {
  if (!text.trim()) {
    return { ok: false, error: `${field.field} needs a number` };
  }
  const value = parseNumberText(text);
  if (typeof value !== 'number') {
    return {
      ok: false,
      error: `${field.field} must be a number, got ${pyRepr(value)}`
    };
  }
  return checkBounds(field, value);
}

function checkSelect(field: IOptionField, value: string): Checked {
  const options = field.spec.options ?? [];
  if (!options.includes(value)) {
    return {
      ok: false,
      error: `${pyRepr(value)} is not a valid choice for ${field.field}; choose one of: ${options.join(', ')}`
    };
  }
  return { ok: true, value };
}

function checkMapping(field: IOptionField, text: string): Checked {
  if (!text.trim()) {
    return { ok: true, value: {} };
  }
  let value: unknown;
  try {
    value = loadYaml(text);
  } catch (err) {
    const mark = err instanceof YAMLException ? err.mark : undefined;
    const where = mark
      ? ` at line ${mark.line + 1}, column ${mark.column + 1}`
      : '';
    const reason =
      err instanceof YAMLException ? err.reason : 'it could not be parsed';
    return {
      ok: false,
      error: `${field.field} is not valid YAML${where}: ${reason}; write one \`NAME: value\` per line`
    };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      ok: false,
      error: `${field.field} must be a mapping of names to values, got ${kindOf(value)}`
    };
  }
  return { ok: true, value };
}

/**
 * Check what a user entered for a field: text for number, string, select and mapping
 * inputs, a boolean for a checkbox.
 */
export function checkInput(
  field: IOptionField,
  raw: string | boolean
): Checked {
  switch (field.spec.type) {
    case 'int':
      return checkInt(field, String(raw));
    case 'float':
      return checkFloat(field, String(raw));
    case 'bool':
      return typeof raw === 'boolean'
        ? { ok: true, value: raw }
        : {
            ok: false,
            error: `${field.field} must be true or false, got ${pyRepr(raw)}`
          };
    case 'select':
      return checkSelect(field, String(raw));
    case 'mapping':
      return checkMapping(field, String(raw));
    case 'string':
      return { ok: true, value: String(raw) };
    default:
      return {
        ok: false,
        error: `${field.field} has a type this page does not know (${String(
          (field.spec as { type: unknown }).type
        )}); reload the page or upgrade hubgate`
      };
  }
}

/** The text an input shows for a field's value. */
export function inputText(field: IOptionField, value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (field.spec.type === 'mapping') {
    const entries = Object.keys(value as Record<string, unknown>);
    return entries.length ? dumpYaml(value) : '';
  }
  return String(value);
}
