import t from 'tap';
import { MemoryStore } from '../../src/store/memory.js';
import { storeContract } from '../support/store-contract.js';

storeContract(t, async () => new MemoryStore());
