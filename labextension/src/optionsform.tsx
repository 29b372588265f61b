/**
 * The "New cluster" form: JupyterLab's own form component (`FormComponent`, built on
 * react-jsonschema-form) rendering the options' JSON Schema and UI hints from
 * api/hubgate/options. Each option is an input of the kind its `input` hint names, and
 * the form is validated by the schema's rules with the service's own messages
 * (optionschema.ts, given to the form as its validator). No option type is named here.
 */
import { FormComponent, ReactWidget } from '@jupyterlab/ui-components';
import { ReadonlyJSONObject } from '@lumino/coreutils';
import type {
  ErrorSchema,
  FieldTemplateProps,
  ObjectFieldTemplateProps,
  RJSFSchema,
  RJSFValidationError,
  UiSchema,
  ValidatorType,
  WidgetProps
} from '@rjsf/utils';
import React from 'react';

import { checkInput, formFields, IFormField, inputText } from './optionschema';
import { FormInput, IOptionsReply } from './types';

/** What the inputs hold: text, or true/false for a checkbox. */
type Typed = Record<string, string | boolean>;

export class OptionsForm extends ReactWidget {
  constructor(reply: IOptionsReply) {
    super();
    this.addClass('hubgate-OptionsForm');
    this._fields = formFields(reply.schema, reply.ui_schema);
    this._kinds = reply.schema['x-hubgate-kinds'] ?? {};
    this._typed = Object.fromEntries(
      this._fields.map(f => [
        f.name,
        f.input === 'checkbox'
          ? Boolean(f.schema.default)
          : inputText(f, f.schema.default)
      ])
    );
    this._validator = new Private.Validator(typed => this._check(typed));
  }

  /** Messages of the fields that currently hold invalid values, by field name. */
  get errors(): Map<string, string> {
    return this._check(this._typed);
  }

  /** Every field's current (valid) value, or null while any field is invalid. */
  values(): Record<string, unknown> | null {
    const values: Record<string, unknown> = {};
    for (const field of this._fields) {
      const checked = checkInput(field, this._typed[field.name], this._kinds);
      if (!checked.ok) {
        return null;
      }
      values[field.name] = checked.value;
    }
    return values;
  }

  /** Called after every change (the panel enables its Create button from it). */
  onValidityChanged: (valid: boolean) => void = () => undefined;

  protected render(): JSX.Element {
    return (
      <FormComponent
        tagName="div"
        schema={Private.inputSchema(this._fields)}
        uiSchema={Private.inputUiSchema(this._fields)}
        formData={this._typed}
        formContext={new Map(this._fields.map(f => [f.name, f]))}
        validator={this._validator}
        liveValidate
        showErrorList={false}
        templates={{
          FieldTemplate: Private.Row,
          ObjectFieldTemplate: Private.Rows
        }}
        widgets={Private.WIDGETS}
        onChange={event => {
          this._typed = { ...(event.formData as Typed) };
          this.onValidityChanged(this.errors.size === 0);
        }}
      />
    );
  }

  private _check(typed: Typed): Map<string, string> {
    const errors = new Map<string, string>();
    for (const field of this._fields) {
      const checked = checkInput(field, typed[field.name] ?? '', this._kinds);
      if (!checked.ok) {
        errors.set(field.name, checked.error);
      }
    }
    return errors;
  }

  private _fields: IFormField[];
  private _kinds: Record<string, string>;
  private _typed: Typed;
  private _validator: ValidatorType<ReadonlyJSONObject>;
}

namespace Private {
  /** The schema of what the inputs hold (text, or a boolean for a checkbox). */
  export function inputSchema(fields: IFormField[]): RJSFSchema {
    return {
      type: 'object',
      properties: Object.fromEntries(
        fields.map(f => [
          f.name,
          f.input === 'checkbox'
            ? { type: 'boolean', title: f.label }
            : f.input === 'choice'
              ? {
                  type: 'string',
                  title: f.label,
                  enum: (f.schema.enum ?? []).map(String)
                }
              : { type: 'string', title: f.label }
        ])
      )
    };
  }

  export function inputUiSchema(
    fields: IFormField[]
  ): UiSchema<ReadonlyJSONObject> {
    const ui: UiSchema<ReadonlyJSONObject> = {
      'ui:order': fields.map(f => f.name),
      'ui:submitButtonOptions': { norender: true }
    };
    for (const f of fields) {
      const { minimum, maximum } = f.schema;
      ui[f.name] = {
        'ui:widget': f.input,
        'ui:options': { field: f.name },
        'ui:placeholder':
          f.input === 'number' && (minimum != null || maximum != null)
            ? `${minimum ?? ''} – ${maximum ?? ''}`
            : f.input === 'yaml'
              ? 'NAME: value'
              : ''
      };
    }
    return ui;
  }

  /** The form's validator: the options' schema and messages (optionschema.ts). */
  export class Validator implements ValidatorType<ReadonlyJSONObject> {
    constructor(check: (typed: Typed) => Map<string, string>) {
      this._check = check;
    }

    validateFormData(formData: ReadonlyJSONObject | undefined): {
      errors: RJSFValidationError[];
      errorSchema: ErrorSchema<ReadonlyJSONObject>;
    } {
      const errors = this._check((formData ?? {}) as Typed);
      const errorSchema: Record<string, { __errors: string[] }> = {};
      const list: RJSFValidationError[] = [];
      for (const [name, message] of errors) {
        errorSchema[name] = { __errors: [message] };
        list.push({ property: `.${name}`, message, stack: message });
      }
      return {
        errors: list,
        errorSchema: errorSchema as ErrorSchema<ReadonlyJSONObject>
      };
    }

    toErrorList(): RJSFValidationError[] {
      return [];
    }

    isValid(): boolean {
      // Only used to pick among anyOf/oneOf branches, which option schemas do not have.
      return true;
    }

    rawValidation<Result = unknown>(): { errors?: Result[] } {
      return { errors: [] };
    }

    private _check: (typed: Typed) => Map<string, string>;
  }

  export function fieldOf(
    props: WidgetProps | FieldTemplateProps
  ): IFormField | null {
    const name = (props.uiSchema?.['ui:options'] as { field?: string })?.field;
    const fields = props.registry.formContext as Map<string, IFormField>;
    return name === undefined ? null : (fields.get(name) ?? null);
  }

  /** One option: label, input, help and its message (the classes the page styles). */
  export function Row(props: FieldTemplateProps): JSX.Element {
    const field = fieldOf(props);
    if (field === null) {
      return <>{props.children}</>;
    }
    return (
      <div className="hubgate-OptionsForm-row">
        <label htmlFor={props.id} className="hubgate-OptionsForm-label">
          {field.label}
        </label>
        {props.children}
        {field.help ? (
          <div className="hubgate-OptionsForm-help">{field.help}</div>
        ) : null}
        <div className="hubgate-OptionsForm-error" role="alert">
          {props.rawErrors?.[0] ?? ''}
        </div>
      </div>
    );
  }

  export function Rows(props: ObjectFieldTemplateProps): JSX.Element {
    return <>{props.properties.map(p => p.content)}</>;
  }

  export function inputProps(props: WidgetProps): Record<string, unknown> {
    const invalid = Boolean(props.rawErrors?.length);
    return {
      id: props.id,
      'data-field': fieldOf(props)?.name,
      title: fieldOf(props)?.help ?? '',
      className: invalid ? 'hubgate-mod-invalid' : undefined,
      'aria-invalid': invalid ? 'true' : undefined
    };
  }

  export function Text(props: WidgetProps): JSX.Element {
    return (
      <input
        type="text"
        {...inputProps(props)}
        value={String(props.value ?? '')}
        placeholder={props.placeholder || undefined}
        onChange={event => props.onChange(event.target.value)}
      />
    );
  }

  export function Yaml(props: WidgetProps): JSX.Element {
    return (
      <textarea
        rows={3}
        {...inputProps(props)}
        value={String(props.value ?? '')}
        placeholder={props.placeholder || undefined}
        onChange={event => props.onChange(event.target.value)}
      />
    );
  }

  export function Checkbox(props: WidgetProps): JSX.Element {
    return (
      <input
        type="checkbox"
        {...inputProps(props)}
        checked={Boolean(props.value)}
        onChange={event => props.onChange(event.target.checked)}
      />
    );
  }

  export function Choice(props: WidgetProps): JSX.Element {
    return (
      <select
        {...inputProps(props)}
        value={String(props.value ?? '')}
        onChange={event => props.onChange(event.target.value)}
      >
        {(fieldOf(props)?.schema.enum ?? []).map(choice => (
          <option key={String(choice)} value={String(choice)}>
            {String(choice)}
          </option>
        ))}
      </select>
    );
  }

  /** The input of each `input` hint. */
  export const WIDGETS: Record<FormInput, (props: WidgetProps) => JSX.Element> =
    {
      text: Text,
      number: Text,
      yaml: Yaml,
      checkbox: Checkbox,
      choice: Choice
    };
}
