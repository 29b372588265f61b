/**
 * The "New cluster" form, built from the service's option spec and validated as the
 * user types with the same rules and messages as the service.
 */
import { Widget } from '@lumino/widgets';

import { checkInput, inputText } from './validation';
import { IOptionField } from './types';

type Input = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

export class OptionsForm extends Widget {
  constructor(fields: IOptionField[]) {
    super();
    this.addClass('hubgate-OptionsForm');
    this._fields = fields;
    for (const field of fields) {
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

  private _row(field: IOptionField): HTMLElement {
    const row = document.createElement('div');
    row.className = 'hubgate-OptionsForm-row';
    const id = `hubgate-option-${field.field}-${Private.nextId()}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = field.label || field.field;
    label.className = 'hubgate-OptionsForm-label';
    const input = this._input(field);
    input.id = id;
    input.dataset.field = field.field;
    input.title = field.help ?? '';
    this._inputs.set(field.field, input);
    const message = document.createElement('div');
    message.className = 'hubgate-OptionsForm-error';
    message.setAttribute('role', 'alert');
    this._messages.set(field.field, message);
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
    this._values.set(field.field, field.default);
    return row;
  }

  private _input(field: IOptionField): Input {
    switch (field.spec.type) {
      case 'bool': {
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.checked = Boolean(field.default);
        return box;
      }
      case 'select': {
        const select = document.createElement('select');
        for (const option of field.spec.options ?? []) {
          const element = document.createElement('option');
          element.value = option;
          element.textContent = option;
          select.appendChild(element);
        }
        select.value = String(field.default ?? '');
        return select;
      }
      case 'mapping': {
        const area = document.createElement('textarea');
        area.rows = 3;
        area.placeholder = 'NAME: value';
        area.value = inputText(field, field.default);
        return area;
      }
      default: {
        const text = document.createElement('input');
        text.type = 'text';
        text.value = inputText(field, field.default);
        const { min, max } = field.spec;
        if (field.spec.type !== 'string' && (min != null || max != null)) {
          text.placeholder = `${min ?? ''} – ${max ?? ''}`;
        }
        return text;
      }
    }
  }

  private _check(field: IOptionField): void {
    const input = this._inputs.get(field.field)!;
    const raw =
      input instanceof HTMLInputElement && input.type === 'checkbox'
        ? input.checked
        : input.value;
    const checked = checkInput(field, raw);
    const message = this._messages.get(field.field)!;
    if (checked.ok) {
      this._values.set(field.field, checked.value);
      this._errors.delete(field.field);
      message.textContent = '';
      input.classList.remove('hubgate-mod-invalid');
      input.removeAttribute('aria-invalid');
    } else {
      this._errors.set(field.field, checked.error);
      message.textContent = checked.error;
      input.classList.add('hubgate-mod-invalid');
      input.setAttribute('aria-invalid', 'true');
    }
    this.onValidityChanged(this._errors.size === 0);
  }

  private _fields: IOptionField[];
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
