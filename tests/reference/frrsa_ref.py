# Reference copy of the non-negative path of frrsa (https://github.com/ViCCo-Group/frrsa), used only to
# check visreps.analysis.frrsa in tests. Author: Philipp Kaniuth (kaniuth@cbs.mpg.de).
# Copyright (C) Philipp Kaniuth / ViCCo-Group. Licensed under the GNU Affero General Public License v3.0
# (frrsa's LICENSE.md): you may redistribute and modify it under the terms of the AGPL-3.0, without
# any warranty; see <https://www.gnu.org/licenses/agpl-3.0.html>.
#
# Copied from frrsa/fitting/crossvalidation.py (frrsa, start_outer_cross_validation's sequential
# branch, run_outer_cross_validation_batch, start_inner_cross_validation, evaluate_hyperparams,
# fit_and_score, compute_predictor_distance), frrsa/fitting/fitting.py (prepare_variables, and the
# `nonnegative=True` branches of find_hyperparameters and regularized_model), frrsa/fitting/scoring.py
# (the pearson cases), frrsa/helper/predictor_distance.py, frrsa/helper/data_splitter.py ('random')
# and frrsa/helper/classical_RSA.py (flatten_matrix for one target). Changes: argument checks,
# prints, the parallel branch, the fracridge (nonnegative=False) branches, 'betas',
# 'predicted_matrix' and 'predictions' outputs are left out; one target only.
# ruff: noqa
# fmt: off

import itertools

import numpy as np
from scipy.stats import pearsonr
from sklearn.linear_model import Ridge
from sklearn.model_selection import ShuffleSplit
from sklearn.preprocessing import StandardScaler, normalize


def calculate_pair_indices(n_conditions):
    pairs = np.array(list((itertools.combinations(range(n_conditions), 2))))
    first_pair_members = pairs[:, 0]
    second_pair_members = pairs[:, 1]
    return first_pair_members, second_pair_members


def hadamard(predictor):
    r, c = np.triu_indices(predictor.shape[1], 1)
    hadamard_prod = np.einsum('ij,ik->ijk', predictor, predictor)[:, r, c]
    n_conditions = predictor.shape[1]
    first_pair_members, second_pair_members = calculate_pair_indices(n_conditions)
    return hadamard_prod, first_pair_members, second_pair_members


def sqeuclidean(predictor):
    n_conditions = predictor.shape[1]
    n_pairs = n_conditions * (n_conditions - 1) // 2
    idx = np.concatenate(([0], np.arange(n_conditions - 1, 0, -1).cumsum()))
    start, stop = idx[:-1], idx[1:]
    X = np.empty((predictor.shape[0], n_pairs), dtype=predictor.dtype)
    for j, i in enumerate(range(n_conditions - 1)):
        X[:, start[j]:stop[j]] = predictor[:, i, None] - predictor[:, i + 1:]
    np.square(X, out=X)
    first_pair_members, second_pair_members = calculate_pair_indices(n_conditions)
    return X, first_pair_members, second_pair_members


def flatten_matrix(representational_matrix):
    return representational_matrix[np.triu_indices(representational_matrix.shape[0], k=1)].reshape(-1, 1)


def data_splitter(k, reps, random_state=None):
    return ShuffleSplit(n_splits=(k * reps), test_size=1/k, train_size=(1 - 1/k), random_state=random_state)


def scoring(y_true, y_pred):
    # pearson only; y_pred (n, n_hyperparams, 1) or (n, 1)
    if y_pred.ndim == 3:
        return np.array([[pearsonr(y_true[:, 0], y_pred[:, h, 0])[0]] for h in range(y_pred.shape[1])])
    return np.array([pearsonr(y_true[:, 0], y_pred[:, 0])[0]])


def prepare_variables(X_train, y_train, X_test=None):
    z_score = StandardScaler(copy=False, with_mean=True, with_std=True)
    X_train_z = z_score.fit_transform(X_train)
    y_train_mean = np.mean(y_train, axis=0)
    y_train_c = y_train - y_train_mean
    X_test_z = z_score.transform(X_test)
    return X_train_z, X_test_z, y_train_c, y_train_mean


def find_hyperparameters(X_train, X_test, y_train, hyperparams, random_state, tol):
    X_train_z, X_test_z, y_train_c, y_train_mean = prepare_variables(X_train, y_train, X_test)
    n_targets = 1
    n_hyperparams = len(hyperparams)
    n_samples = X_test_z.shape[0]
    y_predicted = np.zeros((n_samples, n_hyperparams, n_targets))
    for idx, hyperparam in enumerate(hyperparams):
        model = Ridge(alpha=hyperparam, fit_intercept=False, tol=tol,
                      solver='lbfgs', positive=True, random_state=random_state)
        model.fit(X_train_z, y_train_c)
        y_predicted[:, idx, :] = model.predict(X_test_z).reshape(-1, 1)
    y_predicted += y_train_mean
    return y_predicted


def regularized_model(X_train, X_test, y_train, y_test, hyperparams, random_state, tol):
    X_train_z, X_test_z, y_train_c, y_train_mean = prepare_variables(X_train, y_train, X_test)
    model = Ridge(alpha=hyperparams, fit_intercept=False, tol=tol,
                  solver='lbfgs', positive=True, random_state=random_state)
    model.fit(X_train_z, y_train_c)
    y_predicted = model.predict(X_test_z).reshape(-1, 1)
    y_predicted += y_train_mean
    return y_predicted


def compute_predictor_distance(predictor, idx, measure):
    if measure == 'dot':
        X, first_pair_idx, second_pair_idx = hadamard(predictor[:, idx])
    elif measure == 'sqeuclidean':
        X, first_pair_idx, second_pair_idx = sqeuclidean(predictor[:, idx])
    X = X.transpose()
    return X, first_pair_idx, second_pair_idx


def fit_and_score(predictor, target, train_idx, test_idx, hyperparams, measures, place, random_state, tol):
    X_train, *_ = compute_predictor_distance(predictor, train_idx, measures[0])
    X_test, first_pair_idx, second_pair_idx = compute_predictor_distance(predictor, test_idx, measures[0])
    y_train = flatten_matrix(target[np.ix_(train_idx, train_idx)])
    y_test = flatten_matrix(target[np.ix_(test_idx, test_idx)])
    if place == 'in':
        y_pred = find_hyperparameters(X_train, X_test, y_train, hyperparams, random_state, tol)
    elif place == 'out':
        y_pred = regularized_model(X_train, X_test, y_train, y_test, hyperparams, random_state, tol)
    if measures[1] in ['minkowski', 'cityblock', 'euclidean', 'mahalanobis']:
        y_pred[y_pred < 0] = 0
    score = scoring(y_test, y_pred)
    return score, first_pair_idx, second_pair_idx, y_pred, y_test


def start_inner_cross_validation(random_state, outer_train_indices, predictor, target, hyperparams, measures, tol):
    n_hyperparams = len(hyperparams)
    inner_k, inner_reps = 5, 5
    n_conditions = len(outer_train_indices)
    if not (n_conditions / inner_k > 2):
        while not (n_conditions / inner_k > 2):
            inner_k -= 1
    inner_cv = data_splitter(inner_k, inner_reps, random_state)
    inner_hyperparams_scores = np.empty((n_hyperparams, 1, (inner_k * inner_reps)))
    inner_loop_count = -1
    place = 'in'
    for inner_train_indices, inner_test_indices in inner_cv.split(outer_train_indices):
        inner_loop_count += 1
        train_idx, test_idx = outer_train_indices[inner_train_indices], outer_train_indices[inner_test_indices]
        score_in, *_ = fit_and_score(predictor, target, train_idx, test_idx, hyperparams, measures, place, random_state, tol)
        inner_hyperparams_scores[:, :, inner_loop_count] = score_in
    return inner_hyperparams_scores


def evaluate_hyperparams(inner_hyperparams_scores, hyperparams):
    inner_hyperparams_scores_avgs = np.mean(inner_hyperparams_scores, axis=2)
    best_hyperparam_index = inner_hyperparams_scores_avgs.argmax(axis=0)
    best_hyperparam = hyperparams[best_hyperparam_index]
    return best_hyperparam


def frrsa_nonnegative(target, predictor, preprocess, measures, cv=[5, 10], hyperparams=None, random_state=None, tol=0.001):
    """frrsa(target, predictor, preprocess, nonnegative=True, measures, cv, hyperparams, 'pearson', random_state)
    for one target: returns (score, per-split scores, per-split hyperparameters). `tol` is Ridge's (frrsa: 0.001)."""
    n_conditions = target.shape[1]
    if preprocess:
        if measures[0] == 'dot':
            z_scale = StandardScaler(copy=False, with_mean=True, with_std=True)
            predictor = z_scale.fit_transform(predictor)
        elif measures[0] == 'sqeuclidean':
            predictor = normalize(predictor, norm='l2', axis=0)
    outer_k, outer_reps = cv
    while not (n_conditions / outer_k > 2):
        outer_k -= 1
    if hyperparams is None:
        hyperparams = [1e-1, 1e0, 1e1, 5e1, 1e2, 5e2, 1e3, 4e3, 7e3, 1e4, 3e4, 5e4, 7e4, 1e5]
    hyperparams = np.sort(np.array(hyperparams))
    outer_cv = data_splitter(outer_k, outer_reps, random_state)
    scores, chosen = [], []
    for outer_train_indices, outer_test_indices in outer_cv.split(list(range(n_conditions))):
        inner = start_inner_cross_validation(random_state, outer_train_indices, predictor, target, hyperparams, measures, tol)
        best = evaluate_hyperparams(inner, hyperparams)
        score, *_ = fit_and_score(predictor, target, outer_train_indices, outer_test_indices, best, measures, 'out', random_state, tol)
        scores.append(score[0])
        chosen.append(best[0])
    scores = np.array(scores)
    return np.tanh(np.mean(np.arctanh(scores))), scores, np.array(chosen)
