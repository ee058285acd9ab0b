/** @type {import('jest').Config} Tests that need more than a checkout: root, btrfs-progs and a loop
 *  device (npm run test:system, which .ci/run installs for and runs). */
module.exports = {
  rootDir: '../..',
  testEnvironment: 'node',
  roots: ['<rootDir>/test/system'],
  testMatch: ['**/*.test.ts'],
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json' }],
  },
  testTimeout: 120000,
  maxWorkers: 1,
};
