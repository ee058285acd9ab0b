/** @type {import('jest').Config} Tests that need more than a checkout: root, btrfs-progs and a loop
 *  device (npm run test:system, which .ci/run installs for and runs). One file at a time, as the
 *  multihost project runs. */
module.exports = { ...require('../multihost/jest.config.js'), roots: ['<rootDir>/test/system'] };
