/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The multihost suite needs its GlusterFS cluster (npm run test:multihost); test/system needs root
  // and a loop device (npm run test:system).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/multihost/', '<rootDir>/test/system/'],
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json' }],
  },
  testTimeout: 60000,
  // Native state is process-wide: keep each test file in its own worker process.
  maxWorkers: 2,
};
