/**
 * The shared option cases (tests/options_cases.json), read by the browser's checker from
 * the schema Python produced for them; tests/client/test_options_cases.py runs the same
 * cases in Python.
 */
import { checkInput, checkValue, formFields, inputText } from '../optionschema';
import { IOptionsReply } from '../types';
import cases from '../../../tests/options_cases.json';

interface ICase {
  field: string;
  typed?: string | boolean;
  value?: unknown;
  error?: string;
  error_starts?: string;
}

const doc = cases as unknown as { form: IOptionsReply; cases: ICase[] };
const kinds = doc.form.schema['x-hubgate-kinds'];
const fields = new Map(
  formFields(doc.form.schema, doc.form.ui_schema).map(f => [f.name, f])
);

describe('the shared option cases', () => {
  it.each(doc.cases.map(c => [JSON.stringify(c), c] as [string, ICase]))(
    '%s',
    (_, c) => {
      const field = fields.get(c.field)!;
      const checked =
        c.typed !== undefined
          ? checkInput(field, c.typed, kinds)
          : checkValue(field, c.value, kinds);
      if (c.error_starts !== undefined) {
        expect(checked.ok).toBe(false);
        expect(checked.ok ? '' : checked.error).toMatch(
          new RegExp(
            `^${c.error_starts.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`
          )
        );
      } else if (c.error !== undefined) {
        expect(checked).toEqual({ ok: false, error: c.error });
      } else {
        expect(checked).toEqual({ ok: true, value: c.value });
      }
    }
  );
});

describe('the form fields', () => {
  it('follow the schema order with labels, help and input hints', () => {
    const all = formFields(doc.form.schema, doc.form.ui_schema);
    expect(all.map(f => [f.name, f.input])).toEqual([
      ['worker_cores', 'number'],
      ['worker_memory', 'number'],
      ['unbounded', 'number'],
      ['image', 'text'],
      ['gpu', 'checkbox'],
      ['profile', 'choice'],
      ['environment', 'yaml']
    ]);
    expect(all[0].label).toBe('Worker cores');
    expect(all[0].help).toBe('CPU cores (threads) for each worker.');
  });

  it('show mappings as YAML and other values as text', () => {
    const environment = fields.get('environment')!;
    expect(inputText(environment, {})).toBe('');
    expect(inputText(environment, { A: '1' })).toBe("A: '1'\n");
    expect(inputText(fields.get('worker_cores')!, 2)).toBe('2');
    expect(inputText(fields.get('image')!, null)).toBe('');
  });

  it('check a type they have never seen by its schema alone', () => {
    // A field type added in Python reaches the browser as schema keywords and messages.
    const [duration] = formFields(
      {
        type: 'object',
        properties: {
          walltime: {
            type: 'string',
            pattern: '^[0-9]+[smh]$',
            title: 'Wall time',
            'x-hubgate-messages': {
              pattern:
                'walltime must be a number followed by s, m or h, got {got!r}'
            }
          }
        },
        'x-hubgate-kinds': kinds
      },
      { 'ui:order': ['walltime'] }
    );
    expect(checkInput(duration, '2h', kinds)).toEqual({
      ok: true,
      value: '2h'
    });
    expect(checkInput(duration, 'soon', kinds)).toEqual({
      ok: false,
      error: "walltime must be a number followed by s, m or h, got 'soon'"
    });
  });
});
