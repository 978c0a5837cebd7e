"""Literal, slow ports of the gpt-neox v1.0 index-map code: the test oracle for `indexmap`.

Kept as close to the originals as Python allows (same statements, same order, same dtypes):
`megatron/data/gpt2_dataset.py` (`_num_epochs`, `_build_doc_idx` with its `np.mgrid`,
`_build_shuffle_idx`) and `megatron/data/helpers.cpp::build_sample_idx` (the nested while loop,
including int32 `doc_offset`/`remaining_seq_length`). Use only on small inputs: the sample loop is
pure Python.
"""

from __future__ import annotations

import math

import numpy as np


def num_samples_ref(train_iters: int, train_batch_size: int) -> int:
    """data_utils: train_iters * train_batch_size, then get_normalized_weights_and_num_samples."""
    num_samples = train_iters * train_batch_size
    weights = [1.0]
    weight_sum = sum(weights)
    weights = [weight / weight_sum for weight in weights]
    weighted_num_samples = []
    for weight in weights:
        weighted_num_samples.append(int(math.ceil(num_samples * weight * 1.005)))
    return weighted_num_samples[0]


def num_epochs_ref(tokens_per_epoch, seq_length, num_samples) -> int:
    num_epochs = 0
    total_tokens = 0
    while True:
        num_epochs += 1
        total_tokens += tokens_per_epoch
        if ((total_tokens - 1) // seq_length) >= num_samples:
            return num_epochs


def build_doc_idx_ref(documents, num_epochs, np_rng):
    doc_idx = np.mgrid[0:num_epochs, 0 : len(documents)][1]
    doc_idx[:] = documents
    doc_idx = doc_idx.reshape(-1)
    doc_idx = doc_idx.astype(np.int32)
    np_rng.shuffle(doc_idx)
    return doc_idx


def build_sample_idx_ref(sizes, doc_idx, seq_length, num_epochs, tokens_per_epoch, dtype=np.int32):
    """helpers.cpp build_sample_idx_{int32,int64}, statement by statement."""
    num_samples = (num_epochs * tokens_per_epoch - 1) // seq_length
    sample_idx = np.empty(2 * (num_samples + 1), dtype=dtype)
    sizes = [int(s) for s in sizes]
    doc_idx = [int(d) for d in doc_idx]
    sample_index = 0
    doc_idx_index = 0
    doc_offset = 0
    sample_idx[2 * sample_index] = doc_idx_index
    sample_idx[2 * sample_index + 1] = doc_offset
    sample_index += 1
    while sample_index <= num_samples:
        remaining_seq_length = seq_length + 1
        while remaining_seq_length != 0:
            doc_id = doc_idx[doc_idx_index]
            doc_length = sizes[doc_id] - doc_offset
            remaining_seq_length -= doc_length
            if remaining_seq_length <= 0:
                doc_offset += remaining_seq_length + doc_length - 1
                remaining_seq_length = 0
            else:
                doc_idx_index += 1
                doc_offset = 0
        sample_idx[2 * sample_index] = doc_idx_index
        sample_idx[2 * sample_index + 1] = doc_offset
        sample_index += 1
    return sample_idx.reshape(num_samples + 1, 2)


def build_shuffle_idx_ref(size, np_rng):
    dtype_ = np.uint32
    if size >= (np.iinfo(np.uint32).max - 1):
        dtype_ = np.int64
    shuffle_idx = np.arange(start=0, stop=size, step=1, dtype=dtype_)
    np_rng.shuffle(shuffle_idx)
    return shuffle_idx


def build_index_mappings_ref(sizes, num_samples, seq_length, seed):
    """_build_index_mappings for documents = arange(len(sizes)) (data_utils.build_the_dataset)."""
    sizes = np.asarray(sizes, dtype=np.int32)
    documents = np.arange(start=0, stop=sizes.shape[0], step=1, dtype=np.int32)
    tokens_per_epoch = np.sum(sizes[documents])
    num_epochs = num_epochs_ref(tokens_per_epoch, seq_length, num_samples)
    np_rng = np.random.RandomState(seed=seed)
    doc_idx = build_doc_idx_ref(documents, num_epochs, np_rng)
    num_samples_f = (num_epochs * tokens_per_epoch - 1) / seq_length
    dtype = np.int32 if 2 * (num_samples_f + 1) < np.iinfo(np.int32).max else np.int64
    sample_idx = build_sample_idx_ref(
        sizes, doc_idx, seq_length, num_epochs, int(tokens_per_epoch), dtype
    )
    shuffle_idx = build_shuffle_idx_ref(sample_idx.shape[0] - 1, np_rng)
    return doc_idx, sample_idx, shuffle_idx


def get_sample_ref(ds, doc_idx, sample_idx, shuffle_idx, idx):
    """GPT2Dataset.__getitem__ (v1.0: no padding) on an MMIDXDataset-like `ds` with .get()."""
    idx = shuffle_idx[idx]
    doc_index_f = sample_idx[idx][0]
    doc_index_l = sample_idx[idx + 1][0]
    offset_f = sample_idx[idx][1]
    offset_l = sample_idx[idx + 1][1]
    if doc_index_f == doc_index_l:
        sample = ds.get(
            int(doc_idx[doc_index_f]), offset=int(offset_f), length=int(offset_l - offset_f + 1)
        )
    else:
        sample_list = [ds.get(int(doc_idx[doc_index_f]), offset=int(offset_f))]
        for i in range(doc_index_f + 1, doc_index_l):
            sample_list.append(ds.get(int(doc_idx[i])))
        sample_list.append(ds.get(int(doc_idx[doc_index_l]), length=int(offset_l + 1)))
        sample = np.concatenate(sample_list)
    return np.array(sample, dtype=np.int64)
