// Unit tests of the extension's pure logic (validation, formatting); no JupyterLab.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/labextension/src'],
  testRegex: '__tests__/.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  },
  moduleFileExtensions: ['ts', 'js', 'json']
};
