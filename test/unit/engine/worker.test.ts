import t from 'tap';
import { MemoryStore } from '../../../src/store/memory.js';
import { workerCases } from '../../support/worker-cases.js';

workerCases(t, async () => new MemoryStore());
