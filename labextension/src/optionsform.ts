/**
 * The "New cluster" form, built from the JSON Schema of the options and its UI hints
 * (api/hubgate/options), and checked as the user types by the schema's rules with the
 * service's own messages (optionschema.ts). No option type is named here: the input
 * follows each option's `input` hint.
 */
import { Widget } from '@lumino/widgets';

import { checkInput, formFields, IFormField, inputText } from './optionschema';
import { IOptionsReply } from './types';

type Input = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export class OptionsForm extends Widget {
  constructor(reply: IOptionsReply) {
    super();
    this.addClass('hubgate-OptionsForm');
    this._fields = formFields(reply.schema, reply.ui_schema);
    this._kinds = reply.schema['x-hubgate-kinds'] ?? {};
    for (const field of this._fields) {
      this.node.appendChild(this._row(field));
    }
  }

  /** Messages of the fields that currently hold invalid values, by field name. */
  get errors(): Map<string, string> {
    return this._errors;
  }

  /** Every field's current (valid) value, or null while any field is invalid. */
  values(): Record<string, unknown> | null {
    for (const field of this._fields) {
      this._check(field);
    }
    if (this._errors.size) {
      return null;
    }
    return Object.fromEntries(this._values);
  }

  /** Called after every check (the panel enables its Create button from it). */
  onValidityChanged: (valid: boolean) => void = () => undefined;

  private _row(field: IFormField): HTMLElement {
    const row = document.createElement('div');
    row.className = 'hubgate-OptionsForm-row';
    const id = `hubgate-option-${field.name}-${Private.nextId()}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = field.label;
    label.className = 'hubgate-OptionsForm-label';
    const input = this._input(field);
    input.id = id;
    input.dataset.field = field.name;
    input.title = field.help;
    this._inputs.set(field.name, input);
    const message = document.createElement('div');
    message.className = 'hubgate-OptionsForm-error';
    message.setAttribute('role', 'alert');
    this._messages.set(field.name, message);
    const eventName =
      input instanceof HTMLSelectElement || input.type === 'checkbox'
        ? 'change'
        : 'input';
    input.addEventListener(eventName, () => this._check(field));
    row.append(label, input);
    if (field.help) {
      const help = document.createElement('div');
      help.className = 'hubgate-OptionsForm-help';
      help.textContent = field.help;
      row.appendChild(help);
    }
    row.appendChild(message);
    this._values.set(field.name, field.schema.default);
    return row;
  }

  private _input(field: IFormField): Input {
    const value = field.schema.default;
    switch (field.input) {
      case 'checkbox': {
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.checked = Boolean(value);
        return box;
      }
      case 'choice': {
        const select = document.createElement('select');
        for (const choice of field.schema.enum ?? []) {
          const element = document.createElement('option');
          element.value = String(choice);
          element.textContent = String(choice);
          select.appendChild(element);
        }
        select.value = String(value ?? '');
        return select;
      }
      case 'yaml': {
        const area = document.createElement('textarea');
        area.rows = 3;
        area.placeholder = 'NAME: value';
        area.value = inputText(field, value);
        return area;
      }
      default: {
        const text = document.createElement('input');
        text.type = 'text';
        text.value = inputText(field, value);
        const { minimum, maximum } = field.schema;
        if (field.input === 'number' && (minimum != null || maximum != null)) {
          text.placeholder = `${minimum ?? ''} – ${maximum ?? ''}`;
        }
        return text;
      }
    }
  }

  private _check(field: IFormField): void {
    const input = this._inputs.get(field.name)!;
    const raw =
      input instanceof HTMLInputElement && input.type === 'checkbox'
        ? input.checked
        : input.value;
    const checked = checkInput(field, raw, this._kinds);
    const message = this._messages.get(field.name)!;
    if (checked.ok) {
      this._values.set(field.name, checked.value);
      this._errors.delete(field.name);
      message.textContent = '';
      input.classList.remove('hubgate-mod-invalid');
      input.removeAttribute('aria-invalid');
    } else {
      this._errors.set(field.name, checked.error);
      message.textContent = checked.error;
      input.classList.add('hubgate-mod-invalid');
      input.setAttribute('aria-invalid', 'true');
    }
    this.onValidityChanged(this._errors.size === 0);
  }

  private _fields: IFormField[];
  private _kinds: Record<string, string>;
  private _inputs = new Map<string, Input>();
  private _messages = new Map<string, HTMLElement>();
  private _values = new Map<string, unknown>();
  private _errors = new Map<string, string>();
}

namespace Private {
  let counter = 0;
  /** A page-unique number for element ids (labels point at their inputs). */
  export function nextId(): number {
    return counter++;
  }
}
