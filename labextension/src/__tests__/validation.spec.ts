import { checkInput, inputText, pyRepr } from '../validation';
import { IOptionField } from '../types';

const cores: IOptionField = {
  field: 'worker_cores',
  label: 'Worker cores',
  default: 1,
  help: 'CPU cores (threads) for each worker.',
  spec: { type: 'int', min: 1, max: 4 }
};
const memory: IOptionField = {
  field: 'worker_memory',
  label: 'Worker memory (GiB)',
  default: 2,
  spec: { type: 'float', min: 0.5, max: 16 }
};
const profile: IOptionField = {
  field: 'profile',
  label: 'Profile',
  default: 'small',
  spec: { type: 'select', options: ['small', 'large'] }
};
const environment: IOptionField = {
  field: 'environment',
  label: 'Environment variables (YAML)',
  default: {},
  spec: { type: 'mapping' }
};

function error(field: IOptionField, raw: string | boolean): string | null {
  const checked = checkInput(field, raw);
  return checked.ok ? null : checked.error;
}

describe('integer fields', () => {
  it('accept whole numbers within bounds', () => {
    expect(checkInput(cores, '3')).toEqual({ ok: true, value: 3 });
    expect(checkInput(cores, ' 4 ')).toEqual({ ok: true, value: 4 });
  });
  it('reject values out of bounds with the service message', () => {
    expect(error(cores, '10')).toBe('worker_cores must be at most 4, got 10');
    expect(error(cores, '0')).toBe('worker_cores must be at least 1, got 0');
  });
  it('reject non-integers the way Python reports them', () => {
    expect(error(cores, '2.5')).toBe(
      'worker_cores must be an integer, got 2.5'
    );
    expect(error(cores, '1e3')).toBe(
      'worker_cores must be an integer, got 1000.0'
    );
    expect(error(cores, 'two')).toBe(
      "worker_cores must be an integer, got 'two'"
    );
    expect(error(cores, '')).toBe('worker_cores needs a number');
  });
});

describe('float fields', () => {
  it('accept integers and decimals', () => {
    expect(checkInput(memory, '4')).toEqual({ ok: true, value: 4 });
    expect(checkInput(memory, '1.5')).toEqual({ ok: true, value: 1.5 });
  });
  it('reject bad values with readable messages', () => {
    expect(error(memory, '0.1')).toBe(
      'worker_memory must be at least 0.5, got 0.1'
    );
    expect(error(memory, '32')).toBe(
      'worker_memory must be at most 16, got 32'
    );
    expect(error(memory, 'lots')).toBe(
      "worker_memory must be a number, got 'lots'"
    );
  });
});

describe('select fields', () => {
  it('accept listed choices only', () => {
    expect(checkInput(profile, 'large')).toEqual({ ok: true, value: 'large' });
    expect(error(profile, 'huge')).toBe(
      "'huge' is not a valid choice for profile; choose one of: small, large"
    );
  });
});

describe('mapping fields', () => {
  it('parse YAML into a mapping', () => {
    expect(checkInput(environment, 'FOO: bar\nN: 3')).toEqual({
      ok: true,
      value: { FOO: 'bar', N: 3 }
    });
    expect(checkInput(environment, '  ')).toEqual({ ok: true, value: {} });
  });
  it('reject YAML that is not a mapping', () => {
    expect(error(environment, '- a list')).toBe(
      'environment must be a mapping of names to values, got a list'
    );
    expect(error(environment, 'just text')).toBe(
      'environment must be a mapping of names to values, got a string'
    );
  });
  it('explain invalid YAML with its position', () => {
    expect(error(environment, 'FOO: [unclosed')).toMatch(
      /^environment is not valid YAML at line \d+, column \d+: .+; write one `NAME: value` per line$/
    );
  });
  it('shows a mapping as YAML text', () => {
    expect(inputText(environment, { A: '1' })).toBe("A: '1'\n");
    expect(inputText(environment, {})).toBe('');
  });
});

describe('other fields', () => {
  it('bool and string pass through', () => {
    const flag: IOptionField = {
      field: 'debug',
      label: 'Debug',
      default: false,
      spec: { type: 'bool' }
    };
    expect(checkInput(flag, true)).toEqual({ ok: true, value: true });
    const image: IOptionField = {
      field: 'image',
      label: 'Image',
      default: '',
      spec: { type: 'string' }
    };
    expect(checkInput(image, 'python:3.11')).toEqual({
      ok: true,
      value: 'python:3.11'
    });
  });
  it('pyRepr matches Python for strings', () => {
    expect(pyRepr('abc')).toBe("'abc'");
    expect(pyRepr("it's")).toBe('"it\'s"');
    expect(pyRepr(null)).toBe('None');
  });
});
