/** @type {import('jest').Config} Jest project of the multihost suite (npm run test:multihost): run
 *  by test/multihost/run.js, which sets the cluster up around it. */
module.exports = {
  rootDir: '../..',
  testEnvironment: 'node',
  roots: ['<rootDir>/test/multihost'],
  testMatch: ['**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json' }],
  },
  testTimeout: 120000,
  maxWorkers: 1,
};
